"""Issue 19: timm by name, timm train.py checkpoints (EMA preferred), timm hub folders and their
.zip, a torch.export archive read without unpickling, the architecture guess, the input recipe,
and (issue 20, defects 6 and 8) a one-line pickle refusal and a duplicate found before evaluating."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch

from asl_core import library
from asl_core.checkpoint import (CheckpointMeta, NotOurCheckpointError, apply_recipe, content_hash, load_checkpoint,
                                 save_checkpoint)
from asl_core.checkpoint.foreign import describe, read_foreign
from asl_core.engine.analysis import compare
from asl_core.errors import CheckpointError
from asl_core.models import embedding_layer, layer_labels, list_layers
from asl_core.testkit import foreign as F

DATA = dict(dataset="digits-hard", repeat_gray=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    out = {k: F.timm_train_checkpoint(d / k / "model_best.pth.tar", n) for k, n in F.TIMM_MODELS.items()}
    out["hub"] = F.timm_hub_folder(d / "hub")
    out["hub.zip"] = F.zip_folder(out["hub"], d / "hub.zip")
    out["pt2"] = F.export_archive(d / "custom.pt2")
    return out


@pytest.mark.parametrize("kind,first,kind_name", [("convnext", "stem", "Sequential"),
                                                   ("efficientnet", "conv_stem", "Conv2d"),
                                                   ("vit", "patch_embed", "PatchEmbed")])
def test_timm_train_checkpoints_import_with_their_own_layers(files, tmp_path, kind, first, kind_name):
    raw = torch.load(files[kind], weights_only=False)  # the test wrote it: trusted here
    assert isinstance(raw["args"], argparse.Namespace) and "state_dict_ema" in raw
    result = library.import_checkpoint(files[kind], "model_best.pth.tar", tmp_path, name=kind, **DATA)
    meta = result.meta
    assert meta.arch == f"timm/{F.TIMM_MODELS[kind]}" and meta.recipe_source == "file"
    assert meta.input_shape == (3, 32, 32) and (meta.resize, meta.crop) == (32, 32) and meta.channel_repeat == 3
    assert any("state_dict_ema" in w for w in meta.warnings)  # says which weights it took
    assert set(meta.metrics) == {"val", "test"}
    ck = load_checkpoint(result.path)  # back from the library
    ema = {k: v for k, v in raw["state_dict_ema"].items()}
    assert all(torch.equal(ck.model.state_dict()[k], v) for k, v in ema.items())
    labels = layer_labels(ck.model, ck.meta.input_shape)
    assert labels[first].startswith(f"{first} · {kind_name}") and "logits" in labels
    assert embedding_layer(ck.meta.arch, list_layers(ck.model)) in labels


def test_raw_weights_on_request(files):
    raw = torch.load(files["convnext"], weights_only=False)
    ck = load_checkpoint(files["convnext"], use_ema=False)
    assert all(torch.equal(ck.model.state_dict()[k], v) for k, v in raw["state_dict"].items())
    assert any("state_dict)" in w for w in ck.meta.warnings)


def test_hub_folder_and_its_zip_are_the_same_model(files, tmp_path):
    folder = load_checkpoint(files["hub"])
    zipped = load_checkpoint(files["hub.zip"])
    assert folder.meta.arch == zipped.meta.arch == "timm/test_convnext"
    assert folder.meta.content_hash == zipped.meta.content_hash
    assert folder.meta.class_names[0] == "digit 0" and folder.meta.mean == (0.5, 0.5, 0.5)  # its pretrained_cfg
    assert folder.meta.interpolation == "bicubic"
    library.import_checkpoint(files["hub.zip"].read_bytes(), "hub.zip", tmp_path, **DATA)
    with pytest.raises(library.DuplicateCheckpointError):
        library.import_checkpoint(files["hub"], "hub", tmp_path, **DATA)


def test_torch_export_archive_keeps_the_users_module_names(files, tmp_path):
    result = library.import_checkpoint(files["pt2"], "custom.pt2", tmp_path, dataset="digits-hard")
    ck = load_checkpoint(result.path)
    assert ck.meta.arch == "torch.export" and ck.graph
    layers = list_layers(ck.model)
    assert layers[:2] == ["stem", "stem.0"] and {"neck", "neck.0", "neck.1", "head", "logits"} <= set(layers)
    labels = layer_labels(ck.model, ck.meta.input_shape)
    assert labels["neck.1"] == "neck.1 · Residual · 16" and labels["head"] == "head · Linear · 10"
    trusted = torch.export.load(str(files["pt2"])).module()  # our own file: safe to load the unsafe way here
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(trusted(x), ck.model(x), atol=1e-6)


def test_export_with_a_fixed_batch_is_refused_with_the_fix(tmp_path):
    model = F.CustomNet().eval()
    torch.export.save(torch.export.export(model, (torch.randn(2, 1, 8, 8),)), str(tmp_path / "fixed.pt2"))
    with pytest.raises(CheckpointError, match="dynamic batch"):
        load_checkpoint(tmp_path / "fixed.pt2")


def test_models_of_different_architectures_compare_on_a_shared_dataset(files, tmp_path):
    paths = [library.import_checkpoint(files[k], f"{k}.pth.tar", tmp_path, name=k, **DATA).path
             for k in ("convnext", "efficientnet")]
    paths.append(library.import_checkpoint(files["pt2"], "custom.pt2", tmp_path, dataset="digits-hard").path)
    cmp = compare([load_checkpoint(p) for p in paths], layer="logits")
    assert [m.arch for m in cmp.models] == ["timm/test_convnext", "timm/test_efficientnet", "torch.export"]
    assert all(m.projection.coords.shape == (len(m.features), 2) for m in cmp.models)


def test_timm_by_name_for_a_bare_state_dict(tmp_path):
    import timm

    torch.save(timm.create_model("test_efficientnet", num_classes=10).state_dict(), tmp_path / "w.pth")
    with pytest.raises(NotOurCheckpointError, match="say which architecture"):
        load_checkpoint(tmp_path / "w.pth")
    guess = describe(tmp_path / "w.pth").guess
    assert guess.arch == "timm/test_efficientnet" and guess.confidence == 1.0
    ck = load_checkpoint(tmp_path / "w.pth", arch="timm/test_efficientnet")
    assert ck.meta.recipe_source == "architecture" and ck.meta.num_classes == 10
    assert library.main(["--folder", str(tmp_path / "lib"), "import", str(tmp_path / "w.pth"), "--arch",
                         "timm/test_efficientnet", "--dataset", "digits-hard", "--repeat-gray"]) == 0


def test_cli_names_the_guess(tmp_path, capsys):
    import timm

    torch.save(timm.create_model("test_convnext", num_classes=10).state_dict(), tmp_path / "w.pth")
    assert library.main(["--folder", str(tmp_path / "lib"), "import", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--arch timm/test_convnext" in err[0] and "every key and shape matches" in err[0]


def test_recipe_is_idempotent_and_old_checkpoints_keep_their_meaning(ckpt_paths):
    x = torch.rand(2, 3, 20, 28)
    y = apply_recipe(x, resize=16, crop=16)
    assert y.shape == (2, 3, 16, 16) and torch.equal(apply_recipe(y, 16, 16), y)
    ck = load_checkpoint(ckpt_paths[0])
    assert (ck.meta.resize, ck.meta.crop, ck.meta.arch_kwargs) == (0, 0, {})
    old = {k: v for k, v in ck.meta.to_dict().items() if k not in ("resize", "crop", "interpolation", "recipe_source",
                                                                      "arch_kwargs")}
    again = CheckpointMeta.from_dict(json.loads(json.dumps(old)))
    assert content_hash(ck.model.state_dict(), again) == ck.meta.content_hash


def test_below_chance_gets_the_preprocessing_hint():
    meta = CheckpointMeta(arch="digits_cnn", num_classes=10, class_names=tuple("0123456789"), input_shape=(1, 8, 8),
                          mean=(0.5,), std=(0.25,), method="foreign", metrics={"test": {"accuracy": 0.065}})
    assert library.below_chance_hint(meta) == ("accuracy 0.065 is below chance (0.10): the model may expect other "
                                               "preprocessing (size, mean/std, channels)")


def test_duplicate_is_found_before_any_evaluation(files, tmp_path, monkeypatch):
    """Issue 20 defect 8: the second upload of the same weights ran a full evaluation first."""
    calls = []
    real = library.evaluate_on
    monkeypatch.setattr(library, "evaluate_on", lambda ck, spec: calls.append(1) or real(ck, spec))
    library.import_checkpoint(files["pt2"], "custom.pt2", tmp_path, dataset="digits-hard")
    assert len(calls) == 1
    with pytest.raises(library.DuplicateCheckpointError, match="already holds these weights"):
        library.import_checkpoint(files["pt2"].read_bytes(), "again.pt2", tmp_path, dataset="digits-hard")
    assert len(calls) == 1


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_refusal_is_one_plain_line(tmp_path):
    """Issue 20 defect 6: the refusal was cut off and quoted PyTorch ("Weights only load failed...")."""
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": _RunsCommand(marker)}))
    with pytest.raises(CheckpointError) as err:
        read_foreign(tmp_path / "evil.pt")
    message = str(err.value)
    assert "\n" not in message and len(message) < 200 and not marker.exists()
    assert "system" in message and "Weights only" not in message and "PyTorch 2.6" not in message
