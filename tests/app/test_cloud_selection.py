"""ui.cloud reads a lasso or box of a density view back into sample ids, on every point."""

from __future__ import annotations

import numpy as np

from asl_core.report.cloud import in_box, inside
from ui.cloud import selected_mask


def test_selection_event_to_mask():
    rng = np.random.default_rng(0)
    view = {"coords": rng.uniform(-1, 1, size=(50_000, 2)).astype(np.float32), "index": np.arange(50_000) + 7}
    lasso = {"x": [-0.5, 0.5, 0.0], "y": [-0.5, -0.5, 0.5]}
    box = {"x": [0.6, 0.9], "y": [0.6, 0.9]}
    event = {"selection": {"points": [{"customdata": 7}], "box": [box], "lasso": [lasso]}}
    want = inside(view["coords"], lasso["x"], lasso["y"]) | in_box(view["coords"], box["x"], box["y"])
    got = selected_mask(event, view)
    np.testing.assert_array_equal(got, want)
    assert 0.05 < got.mean() < 0.5  # a triangle of area 0.5 and a box of 0.09 in a square of 4
    clicked = selected_mask({"selection": {"points": [{"customdata": [9]}], "box": [], "lasso": []}}, view)
    assert np.flatnonzero(clicked).tolist() == [2]  # a click on a hover-sample point selects that sample
    assert not selected_mask(None, view).any() and not selected_mask({"selection": {}}, view).any()
