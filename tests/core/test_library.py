"""The checkpoint library: safe names, no silent overwrite, foreign weights evaluated on import."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asl_core import library
from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.errors import UserError
from asl_core.engine.features import evaluate
from asl_core.training import TrainConfig, train
from asl_core.engine.options import InferenceOptions


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_spec):
    r = train(TrainConfig(epochs=2, batch_size=16), tiny_spec, progress=False, name="b")
    return save_checkpoint(r.model, r.meta, tmp_path_factory.mktemp("lib") / "b")


@pytest.mark.parametrize("raw,stem", [("../../etc/x.pt", "x"), ("a b/c.safetensors", "c"), ("é-ü.pth", "e-u"),
                                      ("..hidden.pt", "hidden"), ("C:\\win\\w.ckpt", "w")])
def test_safe_name(raw, stem):
    assert library.safe_name(raw) == stem


def test_unusable_name():
    with pytest.raises(UserError, match="not usable"):
        library.safe_name("../.pt")


def test_foreign_weights_with_a_dataset_are_evaluated(trained, tmp_path):
    model = load_checkpoint(trained).model
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.ckpt")
    result = library.import_checkpoint(tmp_path / "w.ckpt", "w.ckpt", tmp_path / "lib", arch="digits_cnn",
                                       num_classes=10, dataset="digits-hard")
    meta = result.meta
    assert meta.source == "foreign" and meta.dataset == get_spec("digits-hard").to_dict()
    splits = build_splits(get_spec("digits-hard"))
    again = evaluate(load_checkpoint(result.path).model, splits.test, meta.mean, meta.std,
                     InferenceOptions(device="cpu", batch_size=512), 10)
    assert meta.metrics["test"]["n"] == 500
    assert meta.metrics["test"]["accuracy"] == pytest.approx(again["accuracy"])


def _other_weights(path, out):
    """The same checkpoint with one weight changed: another content hash under the same file name."""
    ck = load_checkpoint(path)
    state = {k: v.clone() for k, v in ck.model.state_dict().items()}
    state["fc.bias"] += 1.0
    out.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(state, dataclasses.replace(ck.meta, content_hash="", created=""), out / path.stem)


def test_taken_name_gets_a_suffix_and_delete_removes_one(trained, tmp_path):
    folder = tmp_path / "lib"
    first = library.import_checkpoint(trained, trained.name, folder)
    other = _other_weights(trained, tmp_path / "elsewhere")
    second = library.import_checkpoint(other, other.name, folder)
    assert (first.path.name, second.path.name) == ("b.safetensors", "b-2.safetensors")
    assert second.renamed_from == "b.safetensors"
    library.delete_checkpoint("b-2", folder)
    assert [p.name for p in folder.iterdir()] == ["b.safetensors"]
    with pytest.raises(UserError, match="no checkpoint named"):
        library.delete_checkpoint("../b", folder / "sub")


def test_identical_weights_are_reported_not_duplicated(trained, tmp_path):
    folder = tmp_path / "lib"
    first = library.import_checkpoint(trained, trained.name, folder)
    with pytest.raises(library.DuplicateCheckpointError, match=r"already holds these weights as b.safetensors") as err:
        library.import_checkpoint(trained, "other-name.safetensors", folder)
    assert err.value.existing == first.path
    assert [p.name for p in folder.iterdir()] == ["b.safetensors"]
    # re-importing onto its own name is not a duplicate; asking for a copy makes one
    assert library.import_checkpoint(trained, trained.name, folder, overwrite=True).path == first.path
    copy = library.import_checkpoint(trained, "copy.safetensors", folder, allow_duplicate=True)
    assert copy.meta.content_hash == first.meta.content_hash and copy.path.name == "copy.safetensors"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A plain torchvision ``resnet18(num_classes=10)`` state dict: 3-channel, 7x7 stem."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("foreign") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return path


def test_rgb_weights_on_a_grayscale_preset_repeat_the_channel(resnet18_file, tmp_path):
    from asl_core.checkpoint import CheckpointError
    from asl_core.engine.features import extract_features

    spec = get_spec("digits-hard", val_per_class=4, test_per_class=6)
    with pytest.raises(CheckpointError, match="grayscale: allow repeating"):
        library.import_checkpoint(resnet18_file, resnet18_file.name, tmp_path / "lib", arch="resnet18", dataset=spec)
    result = library.import_checkpoint(resnet18_file, resnet18_file.name, tmp_path / "lib", arch="resnet18",
                                       dataset=spec, repeat_gray=True)
    ck = load_checkpoint(result.path)  # the repeat survives the file, and the hash covers it
    assert ck.meta.channel_repeat == 3 and ck.meta.input_shape == (3, 8, 8) and ck.meta.data_channels == 1
    assert ck.meta.mean[0] == ck.meta.mean[1] == ck.meta.mean[2] and ck.meta.metrics["test"]["n"] == 60
    splits = build_splits(spec)
    feats = extract_features(ck, splits.test, ["avgpool"], InferenceOptions(device="cpu"))
    # what the model computes on the grayscale image repeated by hand, normalised with the recorded stats
    x = (splits.test.x.repeat(1, 3, 1, 1) - torch.tensor(ck.meta.mean).view(1, 3, 1, 1)) / torch.tensor(ck.meta.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = ck.model.eval()(x)
    torch.testing.assert_close(torch.from_numpy(feats.logits), expected, rtol=1e-4, atol=1e-4)
    assert ck.meta.metrics["test"]["accuracy"] == pytest.approx(float((feats.preds == feats.labels).mean()))
