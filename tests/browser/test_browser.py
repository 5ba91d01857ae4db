"""The real app in headless Chromium: upload a checkpoint, open Compare, click a confusion
cell and see the highlighted samples change. Screenshots go to tests/_artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.browser.harness import browser_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def test_upload_then_compare(browser_library, artifacts, tmp_path):
    folder, spare = browser_library
    with streamlit_server(folder, tmp_path / "cache", log=artifacts / "server.log") as url, browser_page() as page:
        # --- Checkpoints: upload the asloss checkpoint through the file input
        page.goto(f"{url}/Checkpoints")
        page.get_by_text("Add a checkpoint").wait_for(timeout=60_000)
        wait_idle(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(spare))
        page.get_by_role("button", name="Validate and add").click()
        page.get_by_text("added asloss.safetensors to the library").wait_for(timeout=60_000)
        wait_idle(page)
        page.screenshot(path=str(artifacts / "01_checkpoints_after_upload.png"), full_page=True)
        assert (folder / "asloss.safetensors").exists()

        # --- Compare: the three models, plots drawn
        page.goto(f"{url}/Compare")
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        page.screenshot(path=str(artifacts / "02_compare.png"), full_page=True)
