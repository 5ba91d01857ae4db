"""Compare 2-3 models on the same data: aligned projections with linked selections,
clickable confusion matrices, deltas, flips, McNemar, per-layer separability, downloads."""

from __future__ import annotations

import streamlit as st

from asl_core.report.figures import delta_figure, layer_metrics_figure
from asl_core.report.tables import flip_table, mcnemar_sentence, summary_table
from asl_core.models import embedding_layer
from ui import analysis, downloads, images, library, page, views, widgets
from ui import state as S
from ui.errors import user_errors

settings = page.setup("Compare")
st.title("Compare models")

folder = settings.checkpoints_dir
files = [p.name for p in library.list_checkpoints(folder)]
if len(files) < 2:
    st.info("Comparing needs at least two checkpoints in the library (see the Checkpoints page).")
    st.stop()

with st.sidebar, user_errors():
    chosen = st.multiselect("Models (first = reference)", files, default=library.default_comparison(files, st.query_params.get("models")),
                            max_selections=3, key=S.CMP_MODELS)
    if len(chosen) < 2:
        st.warning("Pick 2 or 3 models.")
        st.stop()
    paths = [library.library_path(folder, f) for f in chosen]
    split = st.selectbox("Split", widgets.SPLITS, key=S.CMP_SPLIT)
    layers = analysis.shared_layers(paths)
    if not layers:
        st.error("These models share no layer names; compare models of one architecture family.")
        st.stop()
    default = embedding_layer(library.load_model(paths[0]).meta.arch)
    layer = st.selectbox("Layer (all models)", layers, index=layers.index(default) if default in layers else 0,
                         key=S.CMP_LAYER, help="Only layers every chosen model has.")
    config = widgets.projection_config(S.CMP_PREFIX)
    metric_layers = st.multiselect("Layers in the separability table", layers,
                                   default=widgets.table_layers(layers, layer), key=S.CMP_METRIC_LAYERS)

with user_errors():
    cmp = analysis.run(paths, split, layer, config, metric_layers=list(dict.fromkeys([layer, *metric_layers])))
names, ref = [m.name for m in cmp.models], cmp.reference

st.caption(f"{cmp.dataset.get('name', '')} · {split} split, {len(ref.features)} samples · layer `{layer}` · "
           f"{config.method.upper()} aligned to {ref.name} ({config.align})")
st.dataframe(summary_table(cmp), hide_index=True, width="stretch")
for note in cmp.notes:
    st.info(note)

# --- what is highlighted: the last selection in a scatter, or the last clicked confusion cell
highlight, listing_title, source_view = views.highlight(cmp, S.CMP_PREFIX)

top = st.columns([3, 1])
color_by = widgets.color_by(S.CMP_COLOR, top[0])
if top[1].button("Clear highlight", key=S.CMP_CLEAR):
    views.clear_highlight(S.CMP_PREFIX)
    st.rerun()
view_arrays = [analysis.view_arrays(m) for m in cmp.models]
titles = [f"{m.name} · trust {m.projection.trustworthiness:.3f}" for m in cmp.models]
views.scatter_row(view_arrays, titles, cmp.class_names, color_by, highlight, S.CMP_PREFIX, source=source_view)

st.subheader("Confusion matrices")
st.caption("Click a cell: its samples (true = row, predicted = column) are highlighted in every view and listed below.")
normalized = st.toggle("Row-normalised", key=S.CMP_NORMALIZED)
views.confusion_row([m.confusion_normalized if normalized else m.confusion for m in cmp.models], names, cmp.class_names,
                    S.CMP_PREFIX, normalized=normalized, cell=views.clicked_cell(cmp, S.CMP_PREFIX))

st.subheader(listing_title, anchor="highlighted")
if highlight:
    images.inspector(library.split_of(ref.features, library.load_model(paths[0]).meta), highlight,
                     ref.features.labels, ref.features.preds, ref.features.confidence, ref.features.index,
                     cmp.class_names)
    st.caption("Captions give the reference model's prediction; hover a point for the others.")

for m in cmp.models[1:]:
    st.subheader(f"{m.name} vs {ref.name}")
    left, right = st.columns([3, 2])
    left.plotly_chart(delta_figure(m.delta_normalized if normalized else m.delta, cmp.class_names,
                                   title=f"confusion delta ({m.name} − {ref.name})"), key=f"cmp_delta_{m.name}")
    right.markdown(mcnemar_sentence(ref.name, m.name, m.mcnemar))
    right.dataframe(flip_table(cmp, m), hide_index=True, width="stretch")

st.subheader("Separability per layer (full-dimensional features)")
table = cmp.layer_table()
st.dataframe(table, hide_index=True, width="stretch")
layer_fig = layer_metrics_figure(table)
if st.toggle("Show as bars", key=S.CMP_LAYER_BARS):  # five subplots: drawn on request to keep the page quick
    st.plotly_chart(layer_fig, key="cmp_layer_metrics")

st.subheader("Downloads")
downloads.buttons(cmp, views.figures_for_download(view_arrays, titles, cmp, color_by, normalized) + [layer_fig])
