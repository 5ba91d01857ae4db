"""The newcomer's smaller defects on Compare and around it (issue 20, defect 9), each pinned."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui import images, widgets

ROOT = Path(__file__).resolve().parents[2]


def test_inspector_spreads_a_large_selection_over_its_classes():
    ids = list(range(1501))
    label_of = {i: (0 if i < 1400 else 1 + i % 5) for i in ids}  # the first 60 ids are all class 0
    shown = images.spread(ids, label_of)
    assert len(shown) == images.MAX_SHOWN and {label_of[i] for i in shown} == {0, 1, 2, 3, 4, 5}
    assert images.spread([3, 1], {3: 0, 1: 0}) == [3, 1]
    assert "at most 60 images" in images.shown_caption(60, 1501, 6)


def test_right_and_wrong_marks_differ_in_colour():
    assert images.RIGHT.startswith(":green[") and images.WRONG.startswith(":red[")


def test_layer_labels_fit_the_sidebar():
    assert widgets.short_kind("AdaptiveAvgPool2d") == "AvgPool" and widgets.short_kind("Linear") == "Linear"
    assert len("avgpool · " + widgets.short_kind("AdaptiveAvgPool2d") + " · 512") <= 26


def test_library_table_prints_metrics_alike(app_env):
    for page in ("app_pages/01_Checkpoints.py", "app.py"):  # app.py runs Home
        at = AppTest.from_file(str(ROOT / page), default_timeout=120)
        at.run()
        assert not at.exception
        config = at.dataframe[0].proto.columns
        assert '"test accuracy": {"label": "test accuracy", "type_config": {"type": "number", "format": "%.3f"}}' in config


def test_captions_name_projections_as_the_widget_does(app_env):
    at = AppTest.from_file(str(ROOT / "app_pages/03_Compare.py"), default_timeout=120)
    at.query_params.update({"proj": "tsne", "perplexity": "7"})
    at.run()
    assert not at.exception
    captions = "\n".join(c.value for c in at.caption)
    assert "t-SNE aligned" in captions and "TSNE" not in captions
