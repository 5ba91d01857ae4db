"""Checkpoint format: round trip, foreign state dicts, and files that must be refused."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys

import pytest
import torch
import torchvision

from asl_core.checkpoint import (
    CheckpointMeta,
    content_hash,
    load_checkpoint,
    save_checkpoint,
)
from asl_core.errors import CheckpointError
from asl_core.models import build_model


def _meta(**kw):
    base = dict(arch="digits_cnn", num_classes=10, class_names=tuple(str(i) for i in range(10)), input_shape=(1, 8, 8),
                mean=(0.3,), std=(0.3,), method="baseline", name="t", small_input=True)
    base.update(kw)
    return CheckpointMeta(**base)


def test_round_trip_keeps_weights_meta_and_hash(tmp_path):
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, in_channels=1)
    meta = _meta(history=[{"epoch": 1, "val_accuracy": 0.5}], metrics={"test": {"accuracy": 0.5}})
    path = save_checkpoint(model, meta, tmp_path / "m")
    assert path.name == "m.safetensors"
    ck = load_checkpoint(path)
    assert not ck.model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    assert ck.meta.history == meta.history and ck.meta.class_names == meta.class_names
    assert ck.meta.content_hash == content_hash(model.state_dict(), meta)
    assert ck.meta.versions["torch"] == torch.__version__ and ck.meta.created
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_hash_changes_with_weights(tmp_path):
    model = build_model("digits_cnn", 10, in_channels=1)
    h1 = content_hash(model.state_dict(), _meta())
    with torch.no_grad():
        model.fc.bias[0] += 1e-3
    assert content_hash(model.state_dict(), _meta()) != h1


def test_bit_flip_in_weights_is_detected(tmp_path):
    path = save_checkpoint(build_model("digits_cnn", 10, in_channels=1), _meta(), tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(build_model("digits_cnn", 10, in_channels=1), _meta(), tmp_path / "m")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_metadata_lying_about_architecture_names_mismatched_shapes(tmp_path):
    model = build_model("digits_cnn", 5, in_channels=1)
    path = save_checkpoint(model, _meta(num_classes=5, class_names=tuple("abcde")), tmp_path / "m")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["asl_lens"])
    meta.update(num_classes=10, class_names=[str(i) for i in range(10)])
    header["__metadata__"]["asl_lens"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n :])
    with pytest.raises(CheckpointError, match=r"fc.weight \(5, 64\) vs \(10, 64\)"):
        load_checkpoint(path)


def test_plain_torchvision_resnet18_state_dict(tmp_path):
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    ck = load_checkpoint(tmp_path / "r18.pth", arch="resnet18", num_classes=7)
    assert ck.meta.source == "foreign" and ck.meta.num_classes == 7 and ck.meta.input_shape[0] == 3
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ck.model(x), model.eval()(x))


def test_lightning_style_checkpoint_with_model_prefix(tmp_path):
    model = build_model("digits_cnn", 10, in_channels=1)
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3,
            "pytorch-lightning_version": "2.4.0", "hyper_parameters": {"lr": 0.01}}
    torch.save(ckpt, tmp_path / "lit.ckpt")
    ck = load_checkpoint(tmp_path / "lit.ckpt", arch="digits_cnn", num_classes=10)
    assert torch.equal(ck.model.fc.weight, model.fc.weight)


def test_foreign_file_without_arch_asks_for_it(tmp_path):
    torch.save(build_model("digits_cnn", 10, in_channels=1).state_dict(), tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="say which architecture"):
        load_checkpoint(tmp_path / "x.pt")


def test_wrong_class_count_names_keys(tmp_path):
    torch.save(build_model("digits_cnn", 10, in_channels=1).state_dict(), tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*fc\.weight"):
        load_checkpoint(tmp_path / "x.pt", arch="digits_cnn", num_classes=4)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "x.pt", arch="resnet18", num_classes=10)


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ImportsModule:
    def __reduce__(self):
        return (__import__, ("antigravity",))


@pytest.mark.parametrize("payload", ["command", "import"])
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_hostile_pickle_runs_nothing(tmp_path, payload, container):
    marker = tmp_path / "pwned"
    evil = _RunsCommand(marker) if payload == "command" else _ImportsModule()
    obj = {"fc.weight": torch.zeros(2, 2), "evil": evil}
    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    sys.modules.pop("antigravity", None)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path, arch="digits_cnn", num_classes=10)
    assert not marker.exists(), "unpickling ran a command"
    assert "antigravity" not in sys.modules, "unpickling imported a module"


def test_nan_weights_refused(tmp_path):
    sd = build_model("digits_cnn", 10, in_channels=1).state_dict()
    sd["fc.weight"][0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="'fc.weight' contains NaN"):
        load_checkpoint(tmp_path / "nan.pt", arch="digits_cnn", num_classes=10)


@pytest.mark.parametrize("content", [b"", os.urandom(64), b"PK\x03\x04garbage", b"\x80\x02garbage"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, arch="digits_cnn", num_classes=10)


def test_size_limit_and_missing(tmp_path):
    path = save_checkpoint(build_model("digits_cnn", 10, in_channels=1), _meta(), tmp_path / "m")
    with pytest.raises(CheckpointError, match="over the"):
        load_checkpoint(path, max_bytes=1000)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
