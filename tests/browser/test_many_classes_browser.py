"""Compare on generated 100- and 1,000-class libraries in headless Chromium (issue 20): the first
screen and every panel render, and clicking a confused pair highlights its samples in every view.
Screenshots: tests/_artifacts/many_{C}_*.png."""

from __future__ import annotations

import re

import pytest

from asl_core.testkit.browser import browser_page, full_screenshot, heading_texts, streamlit_server, wait_idle
from asl_core.testkit.many import make_many_class_library

pytestmark = pytest.mark.browser
ALL_PANELS = "per_class,pairs,agreement,layers,moved,clusters,separability,flips,samples"


@pytest.fixture(scope="module", params=[100, 1000])
def many_library(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"many{request.param}")
    make_many_class_library(root / "lib", root / "data", request.param)
    return request.param, root / "lib"


def test_every_panel_renders_and_a_pair_click_highlights(many_library, artifacts, tmp_path):
    classes, folder = many_library
    with streamlit_server(folder, tmp_path / "cache", log=artifacts / f"many_{classes}_server.log") as url, \
            browser_page(width=1280) as page:
        page.goto(f"{url}/Compare?panels=pairs")
        page.get_by_text("Most confused pairs").first.wait_for(timeout=300_000)
        wait_idle(page, timeout=300_000)
        body = page.locator("body").inner_text()
        assert f"{classes} classes" in body and "Showing classes 1-25" in body
        assert "Traceback" not in body and "Error" not in body
        # the pairs table: summary first, then the pairs; tick its first row
        grid = page.locator('[data-testid="stDataFrame"]').nth(1)
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        title = page.get_by_text(re.compile(r"Highlighted samples: \d+ of true class n\d+ predicted as n\d+"))
        for attempt in range(3):  # the grid's canvas can take a click before it handles selections
            page.mouse.click(box["x"] + 16, box["y"] + 35 * 1.5)
            try:
                title.wait_for(timeout=30_000)
                break
            except Exception:
                if attempt == 2:
                    raise
                wait_idle(page)
        wait_idle(page)
        dimmed = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(gd => gd._fullLayout && gd._fullLayout.dragmode === 'lasso')
            .map(gd => gd._fullData.some(t => t.marker && typeof t.marker.opacity === 'object'))""")
        assert dimmed == [True, True]  # both views dim all but the pair's samples
        assert "sel=" in page.url or "hl=" in page.url
        full_screenshot(page, artifacts / f"many_{classes}_pair_click.png", width=1280)

        # a link opens the per-class table on its third page and paints the worst regression clusters
        page.goto(f"{url}/Compare?panels={ALL_PANELS}&page=3&color=cluster")
        page.get_by_text("Samples across models").first.wait_for(timeout=600_000)
        wait_idle(page, timeout=600_000)
        body = page.locator("body").inner_text()
        assert f"Rows 51-75 of {classes} classes, most changed first" in body
        assert "regression clusters (20, baseline → asloss accuracy change, samples)" in body
        heads = heading_texts(page)
        for head in ("Per class", "Most confused pairs", "Agreement", "Where the representations diverge", "What moved",
                     "Regression clusters", "Separability per layer", "asloss vs baseline", "Samples across models"):
            assert any(h.startswith(head) for h in heads), head
        assert "Traceback" not in body
        full_screenshot(page, artifacts / f"many_{classes}_all_panels.png", width=1280)
