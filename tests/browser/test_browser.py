"""The real app in headless Chromium: upload a checkpoint, explore with a lasso, open Compare,
click a confusion cell and see the highlighted samples change. Screenshots: tests/_artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asl_core.testkit.browser import (browser_page, click_cell, full_screenshot, heading_texts, lasso_all, streamlit_server,
                                   wait_idle)

pytestmark = pytest.mark.browser
N_CLASSES = 10
# chart order on Compare: 3 scatters, then 3 confusion matrices
FIRST_CONFUSION = 3


def highlighted(page) -> str:
    return next((t for t in heading_texts(page) if t.startswith("Highlighted samples")), "")


def test_upload_explore_compare(browser_library, artifacts, tmp_path):
    folder, spare = browser_library
    with streamlit_server(folder, tmp_path / "cache", log=artifacts / "server.log") as url, browser_page() as page:
        # --- Checkpoints: upload the asloss checkpoint through the file input
        page.goto(f"{url}/Checkpoints")
        page.get_by_text("Add a checkpoint").wait_for(timeout=60_000)
        wait_idle(page)
        uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        uploader.wait_for(state="attached", timeout=120_000)  # a loaded machine renders the form late
        uploader.set_input_files(str(spare))
        page.get_by_text("An ASL Lens checkpoint: it carries its architecture").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name="Validate and add").click()
        page.get_by_text("added asloss.safetensors to the library").wait_for(timeout=60_000)
        wait_idle(page)
        assert (folder / "asloss.safetensors").exists()
        full_screenshot(page, artifacts / "01_checkpoints_after_upload.png")

        # --- Explore: lasso every point, the inspector fills
        page.goto(f"{url}/Explore")
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        assert "Selection: 0 sample(s)" in heading_texts(page)
        lasso_all(page, 0)
        page.get_by_text(re.compile(r"Selection: [1-9]\d* sample")).wait_for(timeout=30_000)
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)
        wait_idle(page)
        assert page.locator('[data-testid="stImage"]').count() > 0
        full_screenshot(page, artifacts / "02_explore_lasso.png")

        # --- Compare: three models, plots drawn, click confusion cells
        page.goto(f"{url}/Compare")
        page.locator(".js-plotly-plot").nth(FIRST_CONFUSION + 2).wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        assert page.locator(".js-plotly-plot").count() == 6  # 3 scatters, 3 confusions; the panels wait to be opened
        assert highlighted(page) == "Highlighted samples: none"
        full_screenshot(page, artifacts / "03_compare.png")

        click_cell(page, FIRST_CONFUSION, 2, 2, N_CLASSES)  # baseline: true 2, predicted 2
        page.get_by_text(re.compile("Highlighted samples: .* predicted 2 by baseline")).wait_for(timeout=30_000)
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)
        wait_idle(page)
        first = highlighted(page)
        n_first = int(re.search(r": (\d+) with", first).group(1))
        assert page.locator('[data-testid="stImage"]').count() == min(n_first, 60)
        full_screenshot(page, artifacts / "04_compare_cell_clicked.png")

        click_cell(page, FIRST_CONFUSION + 2, 0, 2, N_CLASSES)  # clonal: true 0, predicted 2
        page.get_by_text(re.compile("Highlighted samples: .* true 0, predicted 2 by clonal")).wait_for(timeout=30_000)
        wait_idle(page)
        assert highlighted(page) != first
        full_screenshot(page, artifacts / "05_compare_other_cell.png")

        # --- downloads are built when clicked (Streamlit's deferred data), and arrive whole
        # "Figures HTML" arrived as nothing at all, silently (issue 20, defect 1)
        for label, expect in (("Report HTML", "<html"), ("Coordinates CSV", "sample_index"), ("Figures HTML", "plotly")):
            with page.expect_download(timeout=120_000) as info:
                page.get_by_role("button", name=label).click()
            body = Path(info.value.path()).read_text()
            assert expect in body[:5000] and "clonal" in body, label
