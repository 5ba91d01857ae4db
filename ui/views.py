"""Rendering blocks shared by Explore, Compare and the bench page: linked scatters,
clickable confusion matrices and the highlight they drive."""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from asl_core.report.figures import class_palette, confusion_figure, scatter_figure  # noqa: F401 (confusion_figure re-exported)
from ui import cloud, figmemo, selection
from ui.analysis import view_arrays
from ui.urlstate import parse_ids
from ui import state as S

SCATTER_HEIGHT = 520
TRUST_NOTE = ("trust = trustworthiness of the 2-D picture (0-1): how far its nearest neighbours are also "
              "neighbours in the full-dimensional features; below ~0.9, distances on the plot mislead.")
SVG_MAX_POINTS = 5000
# Margins that already hold the axis titles and class names (``scatter_margin``, ``matrix_margin``),
# in px: what plotly's automargin grew them to in Chromium with the app's theme, plus a pixel or two.
SCATTER_TITLE_MARGIN = 46        # left of a scatter with axis titles (automargin: 44 left, 40 below)
MATRIX_TITLE_MARGIN, MATRIX_CHAR_PX = 54, 6  # confusion matrix: 59 left, 65 below with 1-character names
LIGHT_HOVER_POINTS = 20000


def highlight_source(prefix: str) -> tuple[str, int] | None:
    return st.session_state.get(S.highlight_source_key(prefix))


def clear_highlight(prefix: str) -> None:
    st.session_state[S.highlight_source_key(prefix)] = None


@dataclass(frozen=True)
class Look:
    """How the scatters look: marker size, opacity, and the classes isolated in every view."""

    marker_size: float = 6
    opacity: float = 0.8
    isolate: tuple[int, ...] | None = None
    axis_titles: tuple[str, str] = ("", "")


MAX_LEGEND_CLASSES = 30  # distinct colours (report.figures.class_palette); beyond, colour a chosen set


def shared_legend(class_names, color_by: str, isolate: Sequence[int] | None = None, paint: dict | None = None) -> None:
    """One legend above all the views (instead of a legend per chart eating its width)."""
    if color_by == "category" and paint:
        items = list(zip(paint["colors"], paint["names"]))
        title = paint.get("title", "")
        chips = _chips(items)
        st.markdown(f"<div style='font-size:0.9rem'><b>{_escape(title)}</b>&nbsp; {chips}</div>", unsafe_allow_html=True)
        return
    if color_by == "value" and paint:
        st.caption(paint.get("caption", paint.get("title", "")))
        return
    if color_by in ("true", "pred") and isolate is not None and len(class_names) > MAX_LEGEND_CLASSES:
        class_names = list(class_names)
        palette = class_palette(len(class_names))
        items = [(palette[c], str(class_names[c])) for c in isolate]
        title = {"true": "true class", "pred": "predicted class"}[color_by]
        chips = _chips(items[:MAX_LEGEND_CLASSES])
        more = (f"· {len(items) - MAX_LEGEND_CLASSES:,} more in colour (colours repeat beyond {MAX_LEGEND_CLASSES}) "
                if len(items) > MAX_LEGEND_CLASSES else "")
        st.markdown(f"<div style='font-size:0.9rem'><b>{title}</b>&nbsp; {chips} <span style='color:#888'>{more}· the other "
                    f"{len(class_names) - len(items):,} classes grey</span></div>", unsafe_allow_html=True)
        return
    if color_by == "correct":
        items = [("#2ca02c", "correct"), ("#d62728", "✕ wrong")]
    elif color_by == "confidence":
        st.caption("Colour: the model's confidence (max softmax), dark purple 0 → yellow 1.")
        return
    else:
        palette = class_palette(len(class_names))
        keep = set(range(len(class_names)) if isolate is None else isolate)
        items = [(palette[c] if c in keep else "#c8c8c8", str(n)) for c, n in enumerate(class_names)]
    title = {"true": "true class", "pred": "predicted class", "correct": ""}[color_by]
    chips = _chips(items)
    st.markdown(f"<div style='font-size:0.9rem'><b>{title}</b>&nbsp; {chips}</div>", unsafe_allow_html=True)


def _chips(items) -> str:
    """The legend's coloured dots with their names, ``items`` being ``(colour, name)`` pairs."""
    return " ".join(f"<span style='white-space:nowrap;margin-right:0.7em'><span style='display:inline-block;width:0.8em;"
                    f"height:0.8em;border-radius:50%;background:{c};margin-right:0.25em;vertical-align:-0.05em'></span>"
                    f"{_escape(n)}</span>" for c, n in items)


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def scatter_row(views: Sequence[dict[str, np.ndarray]], titles: Sequence[str], class_names, color_by: str,
                highlight: list[int] | None, prefix: str, source: int | None = None, look: Look = Look(),
                legend_in_chart: bool = False) -> None:
    """One scatter per view, side by side, one legend above them (``legend_in_chart`` for a
    single view). Selecting in view ``i`` makes it the highlight source; the source view keeps
    its own selection and is not re-highlighted (so that its figure, and thus its selection,
    stay put). From ``cloud.CLOUD_MIN_POINTS`` points a view is a
    density image drawn on the server (``ui/cloud.py``): plotly's scattergl took minutes to draw
    and lasso 100k-1M points (``bench/bench_cloud.py``)."""
    if len(views[0]["coords"]) >= cloud.CLOUD_MIN_POINTS:
        cloud.cloud_row(views, titles, class_names, color_by, highlight, prefix, source)
        return
    plotly_scatter_row(views, titles, class_names, color_by, highlight, prefix, source, look, legend_in_chart)


def plotly_scatter_row(views: Sequence[dict[str, np.ndarray]], titles: Sequence[str], class_names, color_by: str,
                       highlight: list[int] | None, prefix: str, source: int | None = None, look: Look = Look(),
                       legend_in_chart: bool = False) -> None:
    """The scatter row as plotly scatters (SVG up to ``SVG_MAX_POINTS``, WebGL above), whatever
    the size: what ``scatter_row`` draws below ``cloud.CLOUD_MIN_POINTS`` points."""
    if not legend_in_chart:
        shared_legend(class_names, color_by, look.isolate, views[0].get("paint"))
    cols = st.columns(len(views))
    for i, (col, v, title) in enumerate(zip(cols, views, titles)):
        hl = None if (highlight is None or source == i) else list(highlight)
        fig = figmemo.memo(_scatter, v, title, class_names, color_by, hl, look, legend_in_chart)
        with col:
            st.plotly_chart(fig, key=S.scatter_key(prefix, i), on_select=selection.remember(("scatter", i), prefix),
                            selection_mode=("points", "box", "lasso"), config={"displaylogo": False})


def _scatter(v: dict[str, np.ndarray], title: str, class_names, color_by: str, highlight: list[int] | None, look: Look,
             legend_in_chart: bool) -> go.Figure:
    paint = v.get("paint") or {}
    extra = {}
    if color_by == "category":
        extra = {"categories": (paint["codes"], paint["names"], paint["colors"])}
    elif color_by == "value":
        extra = {"values": paint["values"], "value_title": paint["title"], "value_range": tuple(paint["range"]),
                 "value_scale": paint.get("scale", "Viridis")}
    fig = scatter_figure(v["coords"], v["labels"], v["preds"], v["confidence"], class_names, color_by=color_by,
                         highlight=highlight, title=title, hover_index=v["index"], marker_size=look.marker_size,
                         opacity=look.opacity, show_legend=legend_in_chart, axis_titles=look.axis_titles,
                         isolate=look.isolate if color_by in ("true", "pred") else None, **extra)
    fig = light_when_big(svg_when_small(fig, len(v["coords"])), len(v["coords"]))
    # the toolbar stands on the right edge, not across the title (newcomer's pass, issue 20)
    fig.update_layout(height=SCATTER_HEIGHT, uirevision="keep", title={"font": {"size": 14}, "x": 0.01, "xanchor": "left"},
                      modebar={"orientation": "v"}, margin=scatter_margin(look.axis_titles))
    return fig


def scatter_margin(axis_titles: tuple[str, str]) -> dict:
    """Room for the axis titles from the start. Streamlit's theme sets the titles 20-24 px off the
    axes, more than the figure's own 36 px margin holds, so plotly's automargin grew the margin after
    drawing and drew the whole chart again: every one of 2,000 SVG points twice, on each of the two
    ``Plotly.react`` calls Streamlit makes when a chart mounts. When the margin is large enough the
    first drawing stands (automargin stays on: a longer title still gets its room, as before)."""
    return {"l": SCATTER_TITLE_MARGIN if axis_titles[1] else 10, "r": 10, "t": 64,
            "b": SCATTER_TITLE_MARGIN - 4 if axis_titles[0] else 10}


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
                  normalized: bool = False, cell: tuple[int, int, int] | None = None,
                  classes: Sequence[int] | None = None) -> None:
    """Confusion matrices side by side; clicking a cell makes it the highlight source.
    ``cell`` (view, true, pred) is outlined in every matrix, solid in the view it came from.
    ``classes``: the block to draw, in this order (a zoom into many classes); default all."""
    classes = list(range(len(class_names))) if classes is None else list(classes)
    names = [class_names[c] for c in classes]
    pos = {c: i for i, c in enumerate(classes)}
    cols = st.columns(len(matrices))
    for i, (col, cm, title) in enumerate(zip(cols, matrices, titles)):
        marked = None
        if cell is not None and cell[1] in pos and cell[2] in pos:
            marked = (pos[cell[1]], pos[cell[2]], cell[0] == i)
        sub = np.asarray(cm)[np.ix_(classes, classes)]
        fig = figmemo.memo(_confusion, sub, names, normalized, title, len(matrices) > 1, marked)
        with col:
            st.plotly_chart(fig, key=S.confusion_key(prefix, i), on_select=selection.remember(("cell", i), prefix),
                            selection_mode=("points",), config={"displaylogo": False})


def _confusion(cm: np.ndarray, class_names, normalized: bool, title: str, side_by_side: bool,
               marked: tuple[int, int, bool] | None) -> go.Figure:
    """One clickable confusion matrix; ``marked`` (true, pred, solid) outlines a cell."""
    fig = clickable_cells(confusion_figure(cm, class_names, normalized=normalized, title=title), cm, class_names)
    fig.update_layout(height=420, clickmode="event+select", dragmode=False, margin=matrix_margin(class_names))
    if side_by_side:  # side by side the colour bars eat the cells; hover and the numbers carry the values
        fig.update_traces(showscale=False, selector={"type": "heatmap"})
    if marked is not None:
        t, p, solid = marked
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                      line={"color": "#d62728", "width": 3, "dash": "solid" if solid else "dot"})
    return fig


def matrix_margin(class_names) -> dict:
    """Room for the class names and axis titles from the start (see ``scatter_margin``): left, the
    longest name; below, one row of upright names. Names long enough for plotly to tilt them leave
    the bottom to automargin (drawn twice, as before)."""
    width = MATRIX_CHAR_PX * max((len(str(c)) for c in class_names), default=1)
    upright = len(class_names) * (width + 8) <= 320
    return {"l": MATRIX_TITLE_MARGIN + width, "r": 10, "t": 64, "b": MATRIX_TITLE_MARGIN + 12 if upright else 10}


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


@dataclass(frozen=True)
class Highlight:
    """What is highlighted: sample ids (``None``: nothing), the listing's title, the scatter it
    came from (kept as is), the confusion cell ``(view, true, pred)`` it came from, and the URL
    parameters that reproduce it (``hl`` ids or ``cell``)."""

    ids: list[int] | None = None
    title: str = "Highlighted samples: none"
    source_view: int | None = None
    cell: tuple[int, int, int] | None = None
    url: dict[str, str | None] = field(default_factory=lambda: {"hl": None, "cell": None, "sel": None})


MAX_URL_IDS = 200  # more ids than this go into the cache and the URL carries a short id (``sel=``)
_SELECTION_ID = re.compile(r"^[0-9a-f]{16}$")
_SAVED: set = set()


def save_selection(ids: Sequence[int]) -> str:
    """Keep ``ids`` in the engine's disk cache under a 16-hex id (a digest of them) for a link."""
    from ui.analysis import disk_cache

    arr = np.asarray(sorted({int(v) for v in ids}), dtype=np.int64)
    key = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
    cache = disk_cache()
    if (cache.root, key) not in _SAVED:  # reruns with the same selection write nothing
        cache.put("selection", key, {"ids": arr}, {"n": int(arr.size)})
        _SAVED.add((cache.root, key))
    return key


def load_selection(key: str) -> list[int] | None:
    """The ids saved under ``key`` (``None``: not a selection id, or gone from the cache)."""
    from ui.analysis import disk_cache

    if not _SELECTION_ID.match(key or ""):
        return None
    got = disk_cache().get("selection", key)
    return None if got is None else [int(v) for v in got[0]["ids"]]


def _ids_url(ids: list[int]) -> dict[str, str | None]:
    """``hl=`` for up to ``MAX_URL_IDS`` ids; a larger selection is saved and linked as ``sel=``,
    so a link always reopens the whole selection."""
    if len(ids) <= MAX_URL_IDS:
        return {"hl": ",".join(map(str, ids)), "cell": None, "sel": None}
    return {"hl": None, "cell": None, "sel": save_selection(ids)}


def set_ids(prefix: str, ids: list[int], title: str | None = None) -> None:
    """Highlight ``ids`` (a link's ``hl=``, "highlight these rows", a pair, an agreement cell, a
    cluster); ``title`` says where they came from."""
    st.session_state[S.highlight_ids_key(prefix)] = list(ids)
    st.session_state[S.highlight_title_key(prefix)] = title
    st.session_state[S.highlight_source_key(prefix)] = ("ids", 0)


def set_url_cell(prefix: str, cell: tuple[int, int, int]) -> None:
    st.session_state[S.highlight_source_key(prefix)] = ("urlcell", tuple(cell))


def highlight(cmp, prefix: str, table_ids: list[int] | None = None) -> Highlight:
    """The highlight from the last selection source. ``table_ids``: the sample table's clicked rows."""
    from ui.analysis import cell_samples

    source = highlight_source(prefix)
    names = cmp.class_names
    none = Highlight()
    if source is None:
        return none
    kind, i = source
    if kind == "table":
        if not table_ids:
            return none
        return Highlight(table_ids, f"Highlighted samples: {len(table_ids)} clicked in the sample table", None, None,
                         _ids_url(table_ids))
    if kind == "ids":
        ids = [int(v) for v in st.session_state.get(S.highlight_ids_key(prefix)) or []]
        known = set(int(v) for v in cmp.reference.features.index)
        ids = [v for v in ids if v in known]
        if not ids:
            return none
        title = st.session_state.get(S.highlight_title_key(prefix)) or "chosen"
        return Highlight(ids, f"Highlighted samples: {len(ids)} {title}", None, None, _ids_url(ids))
    if kind == "urlcell":
        view, t, p = i
        if not (0 <= view < len(cmp.models) and 0 <= t < len(names) and 0 <= p < len(names)):
            return none
        cell, i = (t, p), view
    elif i >= len(cmp.models):
        return none
    elif kind == "scatter":
        ids = _scatter_selection(cmp.models[i], prefix, i)
        if not ids:
            return none
        return Highlight(ids, f"Highlighted samples: {len(ids)} selected in {cmp.models[i].name}", i, None, _ids_url(ids))
    else:
        cell = selected_cell(prefix, i, names)
        if cell is None:
            return none
    t, p = cell
    m = cmp.models[i]
    ids = cell_samples(m, t, p)
    return Highlight(ids, f"Highlighted samples: {len(ids)} with true {names[t]}, predicted {names[p]} by {m.name}", None,
                     (i, t, p), {"hl": None, "cell": f"{i}-{t}-{p}", "sel": None})


def _scatter_selection(m, prefix: str, i: int) -> list[int]:
    """The samples selected in view ``i``: plotly's own event for a scatter; for a density view
    (``ui/cloud.py``), the lasso or box applied to every projected point on the server."""
    if len(m.projection.coords) >= cloud.CLOUD_MIN_POINTS:
        return [int(v) for v in cloud.cloud_ids(prefix, i, view_arrays(m))]
    return selection.chart_ids(S.scatter_key(prefix, i))


def apply_link_highlight(url, prefix: str, known_ids, split: str, cell_bounds: tuple[int, int] | None = None) -> None:
    """A link's highlight (``hl=`` ids, ``sel=`` a saved selection or ``cell=view-true-pred``), when
    the URL speaks this run; a bad value, ids outside the split or a cell outside the matrices are a
    warning, never silently ignored."""
    if (sel := url.asked("sel")) is not None:
        ids = load_selection(sel)
        if ids is None:
            st.warning(f"Ignored `sel={sel}` from the link: no saved selection has that id here (the cache may have "
                       "been cleared); nothing is highlighted.")
            return
        set_ids(prefix, ids)
    elif (hl_text := url.asked("hl")) is not None:
        try:
            ids = parse_ids(hl_text)
        except ValueError:
            st.warning(f"Ignored `hl={hl_text}` from the link: sample ids are whole numbers separated by commas.")
            return
        set_ids(prefix, ids)
        missing = sorted(set(ids) - set(np.asarray(known_ids).tolist()))
        if missing:
            st.warning(f"The link highlights sample(s) {', '.join(map(str, missing[:10]))}, not in the {split} split.")
    elif (cell_text := url.asked("cell")) is not None:
        try:
            cell = parse_cell(cell_text)
            if cell_bounds is not None:
                views_n, classes_n = cell_bounds
                if not (0 <= cell[0] < views_n and 0 <= cell[1] < classes_n and 0 <= cell[2] < classes_n):
                    raise ValueError(f"there are {views_n} confusion matrices (0-{views_n - 1}) of {classes_n} classes "
                                     f"(0-{classes_n - 1})")
            set_url_cell(prefix, cell)
        except ValueError as exc:
            st.warning(f"Ignored `cell={cell_text}` from the link: {exc}.")


def parse_cell(text: str) -> tuple[int, int, int]:
    """A link's ``cell=view-true-pred``."""
    parts = text.split("-")
    if len(parts) != 3:
        raise ValueError("expected view-true-predicted, e.g. 1-3-5")
    v, t, p = (int(x) for x in parts)
    return v, t, p


def view_title(m) -> str:
    """A projection's title: the model and the trustworthiness of its 2-D picture."""
    return f"{m.name} · trust {m.projection.trustworthiness:.3f}"


def figures_for_download(cmp, color_by: str, normalized: bool, paints: Sequence[dict] | None = None) -> list:
    """The scatters and confusion matrices as they are drawn. Every argument is a plain value: the
    file is built when its button is clicked, outside the page's run, where widget state may be gone."""
    figs = []
    for i, m in enumerate(cmp.models):
        v = dict(view_arrays(m))
        if paints is not None:
            v["paint"] = paints[i]
        if color_by in ("category", "value") and not v.get("paint"):
            color_by = "correct"
        figs.append(_scatter(v, view_title(m), cmp.class_names, color_by, None, Look(), True))
    figs += [confusion_figure(m.confusion_normalized if normalized else m.confusion, cmp.class_names,
                              normalized=normalized, title=m.name) for m in cmp.models]
    return figs


def decimals(table, digits: int = 3) -> dict:
    """``column_config`` that prints every float column of ``table`` with ``digits`` decimals
    (so 0.03 and 0.054 line up as 0.030 and 0.054)."""
    return {c: st.column_config.NumberColumn(c, format=f"%.{digits}f") for c in table.columns
            if str(table[c].dtype).startswith("float")}
