"""Someone else's model on the server's data, through the upload form (issue 11, item 7): a plain
torchvision ResNet-18 against a grayscale preset, then Explore on it; messages sit under the form."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from asl_core.checkpoint import load_checkpoint
from ui import state as S

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resnet18_bytes() -> bytes:
    import torchvision

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), buf)
    return buf.getvalue()


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / name), default_timeout=180)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _submit(at: AppTest, file_name: str, data: bytes, **form) -> AppTest:
    at.file_uploader(key=S.CKPT_UPLOAD).set_value((file_name, data, "application/octet-stream"))
    at.selectbox(key=S.CKPT_UPLOAD_ARCH).set_value(form.get("arch", "resnet18"))
    at.selectbox(key=S.CKPT_UPLOAD_DATASET).set_value(form.get("dataset", "digits-hard"))
    at.checkbox(key=S.CKPT_UPLOAD_REPEAT_GRAY).set_value(form.get("repeat", True))
    at.button(key=S.CKPT_UPLOAD_SUBMIT).click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_torchvision_resnet18_on_a_grayscale_preset_opens_in_explore(app_env, resnet18_bytes, tmp_path, monkeypatch):
    folder = tmp_path / "lib"
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = _page("01_Checkpoints.py")
    _submit(at, "r18.pth", resnet18_bytes, repeat=False)
    assert any("is grayscale: allow repeating its channel" in e.value for e in at.error), [e.value for e in at.error]
    assert not list(folder.glob("*.safetensors"))
    _submit(at, "r18.pth", resnet18_bytes)
    assert [s.value for s in at.success] and "grayscale channel repeated 3x" in at.success[0].value
    meta = load_checkpoint(folder / "r18.safetensors").meta
    assert (meta.arch, meta.channel_repeat, meta.input_shape, meta.dataset["name"]) == ("resnet18", 3, (3, 8, 8), "digits-hard")
    # the layer list names kind and width
    assert "avgpool · AvgPool · 512" in "\n".join(m.value for m in at.markdown)
    # the same weights again: reported as information (not a red error), not added (issue 20, defect 8)
    _submit(at, "again.pth", resnet18_bytes)
    assert any("already holds these weights as r18.safetensors" in e.value for e in at.info), [e.value for e in at.info]
    assert not at.error, [e.value for e in at.error]
    assert [p.name for p in folder.glob("*.safetensors")] == ["r18.safetensors"]

    explore = _page("02_Explore.py")
    caption = "\n".join(c.value for c in explore.caption)
    assert "r18: foreign, resnet18" in caption and "500 samples" in caption
    assert len(explore.get("plotly_chart")) >= 2


def test_layer_format_func_joins_what_differs(app_env):
    from asl_core.checkpoint import LoadedCheckpoint
    from asl_core.models import build_model
    from ui import widgets

    base = load_checkpoint(app_env / "baseline.safetensors")
    small = LoadedCheckpoint(model=build_model("digits_cnn_small", 10, in_channels=1),
                             meta=base.meta.__class__(**{**base.meta.to_dict(), "arch": "digits_cnn_small",
                                                         "content_hash": "small"}))
    one = widgets.layer_format_func(base)
    assert one("embedding.1") == "embedding.1 · Linear · 64" and one("nope") == "nope"
    both = widgets.layer_format_func(base, small)
    assert both("embedding.1") == "embedding.1 · Linear · 64/32" and both("fc") == "fc · Linear · 10"


def test_timm_hub_folder_as_two_files(app_env, tmp_path, monkeypatch):
    """Issue 19: a timm hub folder uploaded as its two files (config.json beside model.safetensors)."""
    from asl_core.testkit.foreign import timm_hub_folder

    hub = timm_hub_folder(tmp_path / "hub")
    folder = tmp_path / "lib"
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(folder))
    at = _page("01_Checkpoints.py")
    at.file_uploader(key=S.CKPT_UPLOAD).set_value(("model.safetensors", (hub / "model.safetensors").read_bytes(),
                                                    "application/octet-stream"))
    at.run()  # bare weights: the form now asks for the config.json beside them
    at.file_uploader(key=S.CKPT_UPLOAD_CONFIG).set_value(("config.json", (hub / "config.json").read_bytes(),
                                                           "application/json"))
    _submit(at, "model.safetensors", (hub / "model.safetensors").read_bytes(), arch="auto (as the file says)")
    assert any("timm hub folder" in i.value for i in at.info), [i.value for i in at.info]
    assert [s.value for s in at.success] and "validated as timm/test_convnext" in at.success[0].value
    meta = load_checkpoint(folder / "model.safetensors").meta
    assert meta.arch == "timm/test_convnext" and meta.recipe_source == "file" and meta.interpolation == "bicubic"
