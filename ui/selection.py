"""Reading Plotly selection events (``st.plotly_chart(on_select="rerun")``) into sample ids, and the
``on_select`` callback that makes a selection drive the highlight."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import state as S


def _points(event: Any) -> list[dict]:
    if event is None:
        return []
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if not selection:
        return []
    points = selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    return list(points or [])


def sample_ids(event: Any) -> list[int]:
    """Sample indices (``customdata``) of the selected points, sorted and unique."""
    ids = set()
    for p in _points(event):
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            try:
                ids.add(int(cd))
            except (TypeError, ValueError):
                continue
    return sorted(ids)


def chart_ids(key: str) -> list[int]:
    """The sample ids selected in the chart with widget key ``key`` (empty when none)."""
    return sample_ids(st.session_state.get(key))


def heatmap_cell(event: Any, class_names: tuple[str, ...] | list[str]) -> tuple[int, int] | None:
    """``(true, pred)`` of a clicked confusion-matrix cell: y is the true class, x the prediction."""
    names = [str(c) for c in class_names]
    for p in _points(event):
        x, y = p.get("x"), p.get("y")
        try:
            col = names.index(str(x)) if str(x) in names else int(x)
            row = names.index(str(y)) if str(y) in names else int(y)
        except (TypeError, ValueError):
            continue
        if 0 <= row < len(names) and 0 <= col < len(names):
            return row, col
    return None


def table_rows(key: str) -> list[int]:
    """Positions of the rows selected in the ``st.dataframe`` with widget key ``key``."""
    event = st.session_state.get(key)
    if event is None:
        return []
    sel = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if not sel:
        return []
    rows = sel.get("rows") if isinstance(sel, dict) else getattr(sel, "rows", None)
    return [int(r) for r in rows or []]


def remember(source: tuple[str, int], prefix: str):
    """``on_select`` callback that makes ``source`` (``("scatter", i)``, ``("cell", i)``,
    ``("table", 0)``) drive the highlight of the views under ``prefix``."""
    def callback() -> None:
        st.session_state[S.highlight_source_key(prefix)] = source
    return callback
