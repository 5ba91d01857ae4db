"""Issue 19 in headless Chromium: three timm models saved the way timm's train.py saves them
(ConvNeXt, EfficientNet, ViT), a timm hub folder as a .zip and a torch.export archive of a custom
module import through the upload form (which describes each file as soon as it is chosen), open
in Explore with their own layer names, and compare on their shared dataset. The architecture
picker filters timm's 1,300+ names as one types. Screenshots: tests/_artifacts/19_*.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from asl_core.testkit import foreign as F
from asl_core.testkit.browser import browser_page, full_screenshot, pick, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def test_foreign_models_import_explore_and_compare(artifacts, tmp_path):
    src = tmp_path / "src"
    files = {f"timm-{k}": F.timm_train_checkpoint(src / k / "model_best.pth.tar", n) for k, n in F.TIMM_MODELS.items()}
    files["hub"] = F.zip_folder(F.timm_hub_folder(src / "convnext-hub"), src / "convnext-hub.zip")
    files["custom"] = F.export_archive(src / "custom.pt2")
    lib = tmp_path / "lib"
    lib.mkdir()
    with streamlit_server(lib, tmp_path / "cache", log=artifacts / "server_foreign_models.log") as url, \
            browser_page(width=1280, height=1000) as page:
        page.goto(f"{url}/Checkpoints")
        page.get_by_text("Add a checkpoint").wait_for(timeout=120_000)
        wait_idle(page)
        upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')

        # the picker is searchable: typing narrows 1,300+ names
        box = page.get_by_role("combobox", name="Architecture (foreign files)")
        box.scroll_into_view_if_needed()
        box.click()
        page.keyboard.type("convnext_at")
        page.get_by_role("option", name="timm/convnext_atto", exact=True).wait_for(timeout=30_000)
        options = page.get_by_role("option").all_inner_texts()
        assert 0 < len(options) < 10 and all("convnext" in o and "at" in o for o in options), options  # fuzzy filter
        page.screenshot(path=str(artifacts / "19_arch_picker_search.png"))
        page.keyboard.press("Escape")

        for name, path in files.items():
            upload.set_input_files(str(path))
            expected = {"hub": "timm hub folder", "custom": "torch.export archive"}.get(name, "timm train.py checkpoint")
            page.get_by_text(expected).first.wait_for(timeout=120_000)
            wait_idle(page)
            if name == "timm-convnext":
                full_screenshot(page, artifacts / "19_import_form_timm.png", width=1280)
            # a rerun can briefly keep the form of the run before beside the new one (stale elements)
            expect(page.get_by_label("Name in the library")).to_have_count(1, timeout=60_000)
            page.get_by_label("Name in the library").fill(name)
            pick(page, "Dataset (foreign files)", "digits-hard (preset)")
            page.get_by_role("button", name="Validate and add").click()
            page.get_by_text(f"added {name}.safetensors").wait_for(timeout=180_000)
            wait_idle(page)
            assert (lib / f"{name}.safetensors").exists(), name
        page.screenshot(path=str(artifacts / "19_import_custom_message.png"))

        page.goto(f"{url}/Explore?model=custom&layer=neck.1")
        page.get_by_text("custom: foreign, torch.export").wait_for(timeout=180_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=180_000)
        wait_idle(page, timeout=120_000)
        box = page.get_by_role("combobox", name="Layer")
        box.click()
        page.get_by_role("option").first.wait_for(timeout=10_000)
        layers = page.get_by_role("option").all_inner_texts()
        assert "neck.1 · Residual · 16" in layers and "head · Linear · 10" in layers, layers
        page.keyboard.press("Escape")
        full_screenshot(page, artifacts / "19_explore_custom_pt2.png", width=1280)

        page.goto(f"{url}/Explore?model=timm-vit")
        page.get_by_text("timm-vit: foreign, timm/test_vit").wait_for(timeout=180_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=180_000)
        wait_idle(page, timeout=120_000)
        full_screenshot(page, artifacts / "19_explore_timm_vit.png", width=1280)

        page.goto(f"{url}/Compare?models=timm-convnext,timm-efficientnet,custom")
        page.locator(".js-plotly-plot").nth(2).wait_for(timeout=240_000)
        wait_idle(page, timeout=180_000)
        assert page.get_by_text("timm-efficientnet").count() > 0
        full_screenshot(page, artifacts / "19_compare_three_architectures.png", width=1280)
