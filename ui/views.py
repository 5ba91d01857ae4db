"""Rendering blocks shared by Explore, Compare and the bench page: linked scatters,
clickable confusion matrices and the highlight they drive."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from asl_core.report.figures import confusion_figure, scatter_figure  # noqa: F401 (confusion_figure re-exported)
from ui import selection
from ui import state as S

SCATTER_HEIGHT = 460
SVG_MAX_POINTS = 5000
LIGHT_HOVER_POINTS = 20000


def _remember(source: tuple[str, int], prefix: str):
    def callback() -> None:
        st.session_state[S.highlight_source_key(prefix)] = source
    return callback


def highlight_source(prefix: str) -> tuple[str, int] | None:
    return st.session_state.get(S.highlight_source_key(prefix))


def clear_highlight(prefix: str) -> None:
    st.session_state[S.highlight_source_key(prefix)] = None


def scatter_row(views: Sequence[dict[str, np.ndarray]], titles: Sequence[str], class_names, color_by: str,
                highlight: list[int] | None, prefix: str, source: int | None = None) -> None:
    """One scatter per view, side by side. Selecting in view ``i`` makes it the highlight
    source; the source view keeps its own selection and is not re-highlighted (so that its
    figure, and thus its selection, stay put)."""
    cols = st.columns(len(views))
    for i, (col, v, title) in enumerate(zip(cols, views, titles)):
        fig = scatter_figure(v["coords"], v["labels"], v["preds"], v["confidence"], class_names, color_by=color_by,
                             highlight=None if (highlight is None or source == i) else highlight, title=title,
                             hover_index=v["index"])
        fig = light_when_big(svg_when_small(fig, len(v["coords"])), len(v["coords"]))
        fig.update_layout(height=SCATTER_HEIGHT, uirevision="keep")
        with col:
            st.plotly_chart(fig, key=S.scatter_key(prefix, i), on_select=_remember(("scatter", i), prefix),
                            selection_mode=("points", "box", "lasso"), config={"displaylogo": False})


def svg_when_small(fig: go.Figure, n: int) -> go.Figure:
    """SVG markers below ``SVG_MAX_POINTS``: a WebGL context per chart costs more than drawing a
    few thousand SVG points, most of all on machines without a GPU; WebGL stays for big views."""
    if n > SVG_MAX_POINTS:
        return fig
    traces = []
    for tr in fig.data:
        spec = tr.to_plotly_json()
        spec.pop("type", None)
        traces.append(go.Scatter(**spec))
    return go.Figure(data=traces, layout=fig.layout)


def light_when_big(fig: go.Figure, n: int) -> go.Figure:
    """Above ``LIGHT_HOVER_POINTS`` the per-point hover strings are most of the figure (6 of
    11 MB at 100k points); hover shows the sample index instead, the inspector the rest."""
    if n <= LIGHT_HOVER_POINTS:
        return fig
    fig.update_traces(text=None, hovertemplate="sample %{customdata}<extra>%{fullData.name}</extra>")
    return fig


def confusion_row(matrices: Sequence[np.ndarray], titles: Sequence[str], class_names, prefix: str,
                  normalized: bool = False, cell: tuple[int, int] | None = None) -> None:
    """Confusion matrices side by side; clicking a cell makes it the highlight source.
    ``cell`` (true, pred) is outlined in every matrix."""
    cols = st.columns(len(matrices))
    for i, (col, cm, title) in enumerate(zip(cols, matrices, titles)):
        fig = clickable_cells(confusion_figure(cm, class_names, normalized=normalized, title=title), cm, class_names)
        fig.update_layout(height=420, clickmode="event+select", dragmode=False)
        if cell is not None:
            t, p = cell
            fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5, line={"color": "#d62728", "width": 3})
        with col:
            st.plotly_chart(fig, key=S.confusion_key(prefix, i), on_select=_remember(("cell", i), prefix),
                            selection_mode=("points",), config={"displaylogo": False})


def clickable_cells(fig: go.Figure, cm: np.ndarray, class_names) -> go.Figure:
    """Plotly heatmaps emit no selection events, so lay a near-invisible marker on every cell
    (x = predicted, y = true, like the heatmap); clicking a cell selects its marker."""
    names = [str(c) for c in class_names]
    n = len(names)
    rows, cols = np.divmod(np.arange(n * n), n)
    values = np.asarray(cm).ravel()
    fig.add_trace(go.Scatter(
        x=[names[c] for c in cols], y=[names[r] for r in rows], mode="markers", customdata=np.stack([rows, cols], 1),
        marker={"symbol": "square", "size": max(8, 300 // n), "opacity": 0.01, "color": "#000"},
        text=[f"{v:.2f}" if not float(v).is_integer() else f"{int(v)}" for v in values],
        hovertemplate="true %{y}<br>pred %{x}<br>%{text}<br>click to highlight<extra></extra>", showlegend=False,
        selected={"marker": {"opacity": 0.01}}, unselected={"marker": {"opacity": 0.01}},
    ))
    # the markers must not pad the axes: cells stay exactly where the heatmap draws them
    fig.update_xaxes(range=[-0.5, n - 0.5], autorange=False)
    fig.update_yaxes(range=[n - 0.5, -0.5], autorange=False)
    return fig


def selected_cell(prefix: str, i: int, class_names) -> tuple[int, int] | None:
    return selection.heatmap_cell(st.session_state.get(S.confusion_key(prefix, i)), class_names)


def clicked_cell(cmp, prefix: str) -> tuple[int, int] | None:
    """(true, pred) of the confusion cell that drives the highlight, if one does."""
    source = highlight_source(prefix)
    if source is None or source[0] != "cell" or source[1] >= len(cmp.models):
        return None
    return selected_cell(prefix, source[1], cmp.class_names)


def highlight(cmp, prefix: str) -> tuple[list[int] | None, str, int | None]:
    """``(sample ids or None, listing title, source view)`` from the last selection source."""
    from ui.analysis import cell_samples

    source = highlight_source(prefix)
    if source is None:
        return None, "Highlighted samples: none", None
    kind, i = source
    if i >= len(cmp.models):
        return None, "Highlighted samples: none", None
    m = cmp.models[i]
    if kind == "scatter":
        ids = selection.chart_ids(S.scatter_key(prefix, i))
        if not ids:
            return None, "Highlighted samples: none", None
        return ids, f"Highlighted samples: {len(ids)} selected in {m.name}", i
    cell = selected_cell(prefix, i, cmp.class_names)
    if cell is None:
        return None, "Highlighted samples: none", None
    t, p = cell
    ids = cell_samples(m, t, p)
    names = cmp.class_names
    return ids, f"Highlighted samples: {len(ids)} with true {names[t]}, predicted {names[p]} by {m.name}", None


def figures_for_download(view_arrays, titles, cmp, color_by: str, normalized: bool) -> list:
    figs = [scatter_figure(v["coords"], v["labels"], v["preds"], v["confidence"], cmp.class_names, color_by=color_by,
                           title=t, hover_index=v["index"]) for v, t in zip(view_arrays, titles)]
    figs += [confusion_figure(m.confusion_normalized if normalized else m.confusion, cmp.class_names,
                              normalized=normalized, title=m.name) for m in cmp.models]
    return figs
