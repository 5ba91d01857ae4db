"""Explore one model: its projection of a layer, a selection inspector (box, lasso, a point
click or a confusion cell), its confusion matrix, per-class scores with training counts and
the layer's separability figures. Every view setting lives in the URL."""

from __future__ import annotations

import streamlit as st

from asl_core.models import embedding_layer, list_layers
from asl_core.report.figures import per_class_figure
from asl_core.report.tables import per_class_table
from ui import analysis, figmemo, images, library, page, views, widgets
from ui import state as S
from ui.errors import user_errors
from ui.urlstate import UrlState

settings = page.setup("Explore")
st.title("Explore a model")

files = [p.name for p in library.list_checkpoints(settings.checkpoints_dir)]
if not files:
    st.info("The library is empty: add a checkpoint on the Checkpoints page.")
    st.stop()

url = UrlState(S.EXP_PREFIX)
P = S.EXP_PREFIX


def parse_model(text: str) -> str:
    found, unknown = library.resolve_models(files, text)
    if unknown or not found:
        raise ValueError(f"no checkpoint {text!r} in the library")
    return found[0]


with st.sidebar, user_errors():
    # the demo baseline first: what the other methods are measured against
    url.seed(S.EXP_MODEL, "model", "baseline.safetensors" if "baseline.safetensors" in files else files[0], options=files,
             parse=parse_model, dump=lambda f: f.removesuffix(".safetensors"))
    chosen = st.selectbox("Model", files, key=S.EXP_MODEL)
    path = library.library_path(settings.checkpoints_dir, chosen)
    model = library.load_model(path)
    url.seed(S.EXP_SPLIT, "split", "test", options=widgets.SPLITS)
    split = st.selectbox("Split", widgets.SPLITS, key=S.EXP_SPLIT)
    layers = list_layers(model.model)
    default = embedding_layer(model.meta.arch, layers)
    url.seed(S.EXP_LAYER, "layer", default if default in layers else layers[0], options=layers)
    layer = st.selectbox("Layer", layers, key=S.EXP_LAYER, format_func=widgets.layer_format_func(model))
    widgets.seed_projection(url, P)
    config = widgets.projection_config(P)

for warning in url.warnings:
    st.warning(warning)

with user_errors():
    cmp = analysis.run([path], split, layer, config, metric_layers=[layer])
m = cmp.reference
view = analysis.view_arrays(m)

st.caption(f"{m.name}: {m.method}, {m.arch} · {split} split, {len(m.features)} samples · layer `{layer}` · "
           f"{widgets.PROJECTION_NAMES[config.method]} trustworthiness {m.projection.trustworthiness:.3f} · accuracy "
           f"{m.metrics['accuracy']:.3f}, macro-F1 {m.metrics['macro_f1']:.3f}")
for note in cmp.notes:
    st.info(note)


@st.fragment
def linked_views() -> None:
    """The scatter, the selection inspector, the confusion matrix and the layer's separability:
    a fragment, so a lasso or a cell click reruns only this part."""
    views.apply_link_highlight(url, P, m.features.index, split)
    hl = views.highlight(cmp, P)
    url.set_extra("hl", hl.url["hl"])
    url.set_extra("cell", hl.url["cell"])

    widgets.seed_color(url, S.EXP_COLOR)
    color_by = widgets.color_by(S.EXP_COLOR)
    widgets.seed_look(url, P, len(cmp.class_names))
    look = widgets.scatter_look(P, cmp.class_names, config.method)
    views.scatter_row([view], [f"{m.name} · {layer} · trust {m.projection.trustworthiness:.3f}"], cmp.class_names, color_by,
                      hl.ids, P, source=hl.source_view, look=look, legend_in_chart=True)
    st.caption(views.TRUST_NOTE)
    n_sel = len(hl.ids or [])
    st.subheader(f"Selection: {n_sel} sample(s)")
    if hl.ids:
        st.caption(hl.title.replace("Highlighted samples: ", ""))
        images.inspector(library.split_of(m.features, model.meta), hl.ids, m.features.labels, m.features.preds,
                         m.features.confidence, m.features.index, cmp.class_names)
    else:
        st.caption("Drag a box or a lasso on the scatter, or click a confusion cell, to see those inputs here.")

    left, right = st.columns(2)
    with left:
        st.subheader("Confusion matrix")
        url.seed(S.EXP_NORMALIZED, "normalized", False, parse=lambda t: t == "1")
        normalized = st.toggle("Row-normalised", key=S.EXP_NORMALIZED)
        views.confusion_row([m.confusion_normalized if normalized else m.confusion], [m.name], cmp.class_names, P,
                            normalized=normalized, cell=hl.cell)
        st.caption("Click a cell to see its samples (true = row, predicted = column) above and in the scatter.")
    with right:
        st.subheader(f"Separability of `{layer}`")
        sep = m.separability[layer]
        cols = st.columns(3)
        for i, (label, key, fmt) in enumerate(widgets.SEPARABILITY):
            cols[i % 3].metric(label, format(sep[key], fmt) if sep.get(key) is not None else "—")
        if sep.get("note"):
            st.caption(sep["note"])
    url.republish()


linked_views()

st.subheader("Per class", anchor="per-class")
rows = analysis.per_class(cmp)
labels = [f"{r['class_name']} · {r['train_count']}" + (" · tail" if r["tail"] else "") for r in rows]
scores = {k: [r[k] for r in rows] for k in ("recall", "precision", "f1")}
per_class_title = f"{m.name}: recall, precision and F1 per class"
st.plotly_chart(figmemo.memo(per_class_figure, labels, scores, title=per_class_title), key=S.EXP_PER_CLASS)
st.caption("Under each class: its training samples (from the dataset spec in the checkpoint); tail = the 3 smallest "
           "classes of a long-tailed training set.")
per_class_df = per_class_table(rows)
st.dataframe(per_class_df, hide_index=True, width="stretch", column_config=views.decimals(per_class_df))

url.publish()
