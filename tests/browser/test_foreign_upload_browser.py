"""Issue 11 items 7-9 in headless Chromium: a plain torchvision ResNet-18 state dict uploads
against a grayscale preset (its channel repeated), the message appears under the form in view,
the model opens in Explore; the training history and the layer list. Screenshots: tests/_artifacts/.
(A second upload of the same weights is reported, not added: tests/app/test_foreign_upload.py.)"""

from __future__ import annotations

import shutil

import pytest

from asl_core.testkit.browser import browser_page, full_screenshot, open_options, pick, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    view = page.viewport_size
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= view["height"]


def test_foreign_resnet18_on_grayscale_preset(browser_library, artifacts, tmp_path):
    import torch
    import torchvision
    from PIL import Image

    folder, spare = browser_library
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(spare, lib / "asloss.safetensors")  # a run with per-layer ASLoss terms in its history
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    root = tmp_path / "data"  # an operator-allowed root with one image folder in it
    for c, name in enumerate(("cats", "dogs")):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 12), (40 + 150 * c, 90, 60)).save(root / "pets" / name / f"{i}.png")

    env = {"ASL_LENS_DATA_ROOTS": str(root)}
    with streamlit_server(lib, tmp_path / "cache", env=env, log=artifacts / "server_foreign.log") as url, \
            browser_page(width=1280, height=900) as page:
        page.goto(f"{url}/Checkpoints")
        page.get_by_text("Training history").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        wait_idle(page)
        page.get_by_text("Layers (name · kind · feature width)").click()
        page.get_by_text("embedding.1 · Linear · 64").wait_for(timeout=60_000)
        full_screenshot(page, artifacts / "11_checkpoints_history.png", width=1280)

        # the dataset list offers the presets and the allowed folder, by name
        open_options(page, "Dataset (foreign files)")
        options = page.get_by_role("option").all_inner_texts()
        assert "data/pets · image folder, 2 classes" in options and "digits-hard (preset)" in options, options
        page.keyboard.press("Escape")

        upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        upload.wait_for(state="attached", timeout=120_000)
        upload.set_input_files(str(weights))
        pick(page, "Architecture (foreign files)", "resnet18")
        pick(page, "Dataset (foreign files)", "digits-hard (preset)")
        page.get_by_role("button", name="Validate and add").click()
        message = page.get_by_text("grayscale channel repeated 3x")
        message.wait_for(timeout=120_000)
        wait_idle(page)
        assert (lib / "resnet18.safetensors").exists()
        message.scroll_into_view_if_needed()
        form = page.locator('[data-testid="stForm"]')
        # the message sits right under the form that caused it, and in view
        assert message.bounding_box()["y"] > form.bounding_box()["y"] + form.bounding_box()["height"] - 5
        assert in_viewport(page, message)
        page.screenshot(path=str(artifacts / "12_upload_resnet18_message.png"))

        page.goto(f"{url}/Explore")
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        pick(page, "Model", "resnet18.safetensors")
        page.get_by_text("resnet18: foreign, resnet18").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=120_000)
        wait_idle(page, timeout=120_000)
        assert page.locator(".js-plotly-plot").count() >= 2
        full_screenshot(page, artifacts / "14_explore_resnet18.png", width=1280)
