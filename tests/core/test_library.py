"""The checkpoint library: safe names, no silent overwrite, foreign weights evaluated on import."""

from __future__ import annotations

import pytest
import torch

from asl_core import library
from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.errors import UserError
from asl_core.engine.features import evaluate
from asl_core.training import TrainConfig, train


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
    again = evaluate(load_checkpoint(result.path).model, splits.test, meta.mean, meta.std, torch.device("cpu"), 10)
    assert meta.metrics["test"]["n"] == 500
    assert meta.metrics["test"]["accuracy"] == pytest.approx(again["accuracy"])


def test_taken_name_gets_a_suffix_and_delete_removes_one(trained, tmp_path):
    folder = tmp_path / "lib"
    first = library.import_checkpoint(trained, trained.name, folder)
    second = library.import_checkpoint(trained, trained.name, folder)
    assert (first.path.name, second.path.name) == ("b.safetensors", "b-2.safetensors")
    assert second.renamed_from == "b.safetensors"
    library.delete_checkpoint("b-2", folder)
    assert [p.name for p in folder.iterdir()] == ["b.safetensors"]
    with pytest.raises(UserError, match="no checkpoint named"):
        library.delete_checkpoint("../b", folder / "sub")
