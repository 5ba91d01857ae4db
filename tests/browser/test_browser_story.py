"""The story on Compare in headless Chromium: the headline and the per-class delta; the sample
table filtered to flips, a row click that highlights the sample in every view and shows its
neighbours in both models; a lasso in one scatter that highlights the other; and the link, reloaded, that
reopens the same view. Screenshots: tests/_artifacts/story_*.png."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from asl_core.testkit.browser import browser_page, full_screenshot, heading_texts, streamlit_server, wait_idle

pytestmark = pytest.mark.browser
MODELS = "baseline,clonal"  # both in the browser library whatever the upload test did


def highlighted(page) -> str:
    return next((t for t in heading_texts(page) if t.startswith("Highlighted samples")), "")


# per scatter (the charts whose drag mode is the lasso): does it dim some points (per-point opacities)?
DIMMED_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(gd => gd._fullLayout && gd._fullLayout.dragmode === 'lasso')
    .map(gd => gd._fullData.some(t => t.marker && typeof t.marker.opacity === 'object'))"""


def wait_dimmed(page, expected: list[bool], timeout: float = 30_000) -> None:
    """Wait until the scatters' dimming is ``expected`` (charts redraw after the run ends)."""
    want = json.dumps(expected, separators=(",", ":"))
    page.wait_for_function(f"() => JSON.stringify(({DIMMED_JS})()) === '{want}'", timeout=timeout)


def lasso_first_point(page, chart_index: int, half: float = 4) -> None:
    """Draw a small lasso around the first point of the first trace of the n-th chart.

    (A plain click on a point does not reach Streamlit as a selection in headless Chromium
    in our runs; a lasso around one point is the selection the test can rely on.)"""
    pos = page.evaluate("""(i) => {
        const gd = document.querySelectorAll('.js-plotly-plot')[i];
        gd.scrollIntoView({block: 'center'});
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const pt = gd.calcdata.find(cd => cd.length && cd[0].x !== undefined)[0];
        const r = gd.getBoundingClientRect();
        return {x: r.left + xa._offset + xa.c2p(pt.x), y: r.top + ya._offset + ya.c2p(pt.y)};
    }""", chart_index)
    x, y = pos["x"], pos["y"]
    page.mouse.move(x - half, y - half)
    page.mouse.down()
    for px, py in [(x + half, y - half), (x + half, y + half), (x - half, y + half), (x - half, y - half + 1)]:
        page.mouse.move(px, py, steps=4)
    page.mouse.up()


def click_table_row(page, table_testid_index: int, row: int) -> None:
    """Tick the row-selection box of data row ``row`` of the n-th st.dataframe (a canvas grid)."""
    grid = page.locator('[data-testid="stDataFrame"]').nth(table_testid_index)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    header = row_height = 35
    page.mouse.click(box["x"] + 16, box["y"] + header + row_height * (row + 0.5))


def run_story(folder: Path, cache: Path, artifacts: Path, log: Path | None = None, models: str = MODELS) -> None:
    """The whole story against the library in ``folder``; ``models``: the reference first, then one other."""
    other = models.split(",")[1]
    with streamlit_server(folder, cache, log=log) as url, browser_page(width=1280) as page:
        page.goto(f"{url}/Compare?models={models}&panels=per_class,samples")
        page.get_by_text("paired bootstrap intervals").first.wait_for(timeout=180_000)
        page.locator(".js-plotly-plot").nth(4).wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        # 1. the headline and 2. the per-class delta
        body = page.locator("body").inner_text()
        (artifacts / "story_body.txt").write_text(body)
        assert re.search(r"p [=<] 0\.\d+", body) and "paired bootstrap intervals" in body and "Net samples of the class" in body
        assert page.locator("text=change in per-class F1 against baseline").count() == 1
        full_screenshot(page, artifacts / "story_01_compare.png", width=1280)

        # 4. the sample table filtered to flips; a row click highlights the sample everywhere
        tables = page.locator('[data-testid="stDataFrame"]')
        samples_table = 2  # the summary table, then the per-class table; the grid is a canvas, its headers are no DOM text
        assert tables.count() >= 3
        page.get_by_text("Flipped", exact=True).click()
        page.wait_for_url(re.compile("flipped=1"), timeout=60_000)  # the URL is written at the end of the run
        wait_idle(page)
        shown, total = map(int, re.match(r"(\d+) of (\d+)", page.get_by_text(re.compile(r"^\d+ of \d+ samples")).inner_text()).groups())
        assert 0 < shown < total, (shown, total)
        click_table_row(page, samples_table, 0)
        page.get_by_text("Highlighted samples: 1 clicked in the sample table").wait_for(timeout=30_000)
        wait_idle(page)
        wait_dimmed(page, [True, True])  # both scatters dim everything but the sample
        # 5. its neighbours in both models, with images
        page.get_by_text(re.compile("baseline predicts")).wait_for(timeout=30_000)
        assert page.get_by_text(re.compile(f"{other} predicts")).count() == 1
        assert page.get_by_text("(the sample)").count() == 2
        full_screenshot(page, artifacts / "story_02_flips_row_neighbours.png", width=1280)
        link = page.url
        sample = re.search(r"hl=(\d+)", link).group(1)

        # 6. a reload (and the copied link) reopens the same view
        page.reload()
        page.get_by_text("Highlighted samples: 1 chosen").wait_for(timeout=180_000)
        wait_idle(page, timeout=120_000)
        body = page.locator("body").inner_text()
        assert f"{shown} of {total} samples" in body  # the flips filter came back with the link
        assert f"#{sample} (the sample)" in body
        wait_dimmed(page, [True, True])
        full_screenshot(page, artifacts / "story_03_after_reload.png", width=1280)

        # one point selected in a scatter: highlighted in the other view, neighbours in both
        page.get_by_role("button", name="Clear highlight").click()
        page.get_by_text("Highlighted samples: none").wait_for(timeout=30_000)
        wait_idle(page)
        lasso_first_point(page, 0)
        page.get_by_text(re.compile(r"Highlighted samples: \d+ selected in baseline")).wait_for(timeout=30_000)
        wait_idle(page)
        wait_dimmed(page, [False, True])  # the lassoed view keeps its own selection; the other is highlighted
        full_screenshot(page, artifacts / "story_04_point_lasso.png", width=1280)


def test_story_on_compare(browser_library, artifacts, tmp_path):
    folder, _ = browser_library
    run_story(folder, tmp_path / "cache", artifacts, log=artifacts / "story_server.log")
