"""Linked views of big point clouds (100k to 1M+ points per view) for Streamlit.

Same contract as :func:`ui.views.scatter_row` (views are dicts of ``coords``, ``labels``,
``preds``, ``confidence``, ``index``; a lasso in view ``i`` makes it the highlight source), but
each view is a density image drawn on the server (:mod:`asl_core.report.cloud`): what crosses the
websocket is one PNG and a hover sample per view, whatever the number of points, and the lasso
is applied to every point on the server. Chosen by measurement: bench/bench_cloud.py and
docs/BENCHMARKS.md. ``ui.views.scatter_row`` draws it from ``CLOUD_MIN_POINTS`` points per view,
and reads a cloud view's selection with :func:`cloud_ids` instead of ``selection.chart_ids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from asl_core.report.cloud import cloud_figure, in_box, inside
from ui import figmemo, selection
from ui import state as S

CLOUD_MIN_POINTS = 50_000  # below this the WebGL scatter draws and lassos every point itself
CLOUD_HEIGHT = 460
CLOUD_WIDTH_PX = 640


def _selection(event: Any) -> dict:
    if event is None:
        return {}
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    return dict(selection) if selection else {}


def selected_mask(event: Any, view: dict[str, np.ndarray]) -> np.ndarray:
    """``[N]`` bool: the view's points inside any lasso or box of the chart's selection ``event``,
    plus the hover-sample points clicked (matched by sample index)."""
    coords = view["coords"]
    mask = np.zeros(len(coords), dtype=bool)
    sel = _selection(event)
    for lasso in sel.get("lasso") or []:
        xs, ys = lasso.get("x"), lasso.get("y")
        if isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys):
            mask |= inside(coords, xs, ys)
    for box in sel.get("box") or []:
        xs, ys = box.get("x"), box.get("y")
        if isinstance(xs, list) and isinstance(ys, list) and len(xs) == 2 and len(ys) == 2:
            mask |= in_box(coords, xs, ys)
    clicked = []
    for p in sel.get("points") or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        cd = cd[0] if isinstance(cd, (list, tuple)) and cd else cd
        if isinstance(cd, (int, float)):
            clicked.append(int(cd))
    if clicked and not (sel.get("lasso") or sel.get("box")):
        mask |= np.isin(view["index"], clicked)
    return mask


def cloud_ids(prefix: str, i: int, view: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted sample indices selected in cloud view ``i`` (empty when none)."""
    mask = selected_mask(st.session_state.get(S.scatter_key(prefix, i)), view)
    return np.sort(np.asarray(view["index"])[mask])


def _cloud(v: dict[str, np.ndarray], title: str, class_names, color_by: str, highlight) -> tuple[Any, str]:
    fig, note = cloud_figure(v["coords"], v["labels"], v["preds"], v["confidence"], class_names, color_by=color_by,
                             highlight=highlight, title=title, hover_index=v["index"], width=CLOUD_WIDTH_PX)
    fig.update_layout(height=CLOUD_HEIGHT, uirevision="keep")
    return fig, note


def cloud_row(views: Sequence[dict[str, np.ndarray]], titles: Sequence[str], class_names, color_by: str,
              highlight, prefix: str, source: int | None = None) -> None:
    """One density view per model, side by side, linked like the scatter row: the source view
    keeps its own selection and is not re-highlighted. A caption under each view says what
    was drawn and sampled. Finished views are memoised (``ui.figmemo``): a lasso redraws only the
    views it highlights (0.2 s each at 100k points), not the view it was drawn in."""
    cols = st.columns(len(views))
    for i, (col, v, title) in enumerate(zip(cols, views, titles)):
        hl = None if (highlight is None or source == i) else np.asarray(highlight)
        fig, note = figmemo.memo(_cloud, v, title, class_names, color_by, hl)
        with col:
            st.plotly_chart(fig, key=S.scatter_key(prefix, i), on_select=selection.remember(("scatter", i), prefix),
                            selection_mode=("points", "box", "lasso"), config={"displaylogo": False})
            st.caption(note)
