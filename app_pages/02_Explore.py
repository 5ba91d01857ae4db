"""Explore one model: its projection of a layer, a selection inspector, its confusion matrix
and the layer's separability figures."""

from __future__ import annotations

import streamlit as st

from asl_core.models import embedding_layer, list_layers
from ui import analysis, images, library, page, selection, views, widgets
from ui import state as S
from ui.errors import user_errors

settings = page.setup("Explore")
st.title("Explore a model")

files = [p.name for p in library.list_checkpoints(settings.checkpoints_dir)]
if not files:
    st.info("The library is empty: add a checkpoint on the Checkpoints page.")
    st.stop()

with st.sidebar, user_errors():
    # the demo baseline first: what the other methods are measured against
    chosen = st.selectbox("Model", files, index=files.index("baseline.safetensors") if "baseline.safetensors" in files else 0,
                          key=S.EXP_MODEL)
    path = library.library_path(settings.checkpoints_dir, chosen)
    model = library.load_model(path)
    split = st.selectbox("Split", widgets.SPLITS, key=S.EXP_SPLIT)
    layers = list_layers(model.model)
    default = embedding_layer(model.meta.arch)
    layer = st.selectbox("Layer", layers, index=layers.index(default) if default in layers else 0, key=S.EXP_LAYER)
    config = widgets.projection_config(S.EXP_PREFIX)

with user_errors():
    cmp = analysis.run([path], split, layer, config, metric_layers=[layer])
m = cmp.reference
view = analysis.view_arrays(m)

st.caption(f"{m.name}: {m.method}, {m.arch} · {split} split, {len(m.features)} samples · layer `{layer}` · "
           f"{config.method.upper()} trustworthiness {m.projection.trustworthiness:.3f} · accuracy "
           f"{m.metrics['accuracy']:.3f}, macro-F1 {m.metrics['macro_f1']:.3f}")
for note in cmp.notes:
    st.info(note)

color_by = widgets.color_by(S.EXP_COLOR)
views.scatter_row([view], [f"{m.name} · {layer}"], cmp.class_names, color_by, None, S.EXP_PREFIX, source=0)
ids = selection.chart_ids(S.scatter_key(S.EXP_PREFIX, 0))
st.subheader(f"Selection: {len(ids)} sample(s)")
if ids:
    images.inspector(library.split_of(m.features, model.meta), ids, m.features.labels, m.features.preds,
                     m.features.confidence, m.features.index, cmp.class_names)
else:
    st.caption("Drag a box or a lasso on the scatter (or click a point) to see those inputs here.")

left, right = st.columns(2)
with left:
    st.subheader("Confusion matrix")
    normalized = st.toggle("Row-normalised", key=S.EXP_NORMALIZED)
    st.plotly_chart(views.confusion_figure(m.confusion_normalized if normalized else m.confusion, cmp.class_names,
                                           normalized=normalized, title=m.name), key=S.confusion_key(S.EXP_PREFIX, 0))
with right:
    st.subheader(f"Separability of `{layer}`")
    sep = m.separability[layer]
    cols = st.columns(3)
    for i, (label, key, fmt) in enumerate(widgets.SEPARABILITY):
        cols[i % 3].metric(label, format(sep[key], fmt) if sep.get(key) is not None else "—")
    if sep.get("note"):
        st.caption(sep["note"])
