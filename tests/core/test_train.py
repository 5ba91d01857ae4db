"""Training smoke tests: loadable checkpoints whose stored metrics match a re-evaluation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import DatasetSpec, build_splits
from asl_core.engine.features import evaluate
from asl_core.training import TrainConfig, train
from asl_core.training.cli import main
from asl_core.engine.options import InferenceOptions

ROOT = Path(__file__).resolve().parents[2]


def test_asloss_training_gives_loadable_checkpoint_with_matching_metrics(tmp_path, tiny_spec):
    cfg = TrainConfig(method="asloss", epochs=3, batch_size=16, layers={"embedding": 0.1, "block3": 0.05})
    result = train(cfg, tiny_spec, progress=False, name="t")
    path = save_checkpoint(result.model, result.meta, tmp_path / "t")
    ck = load_checkpoint(path)
    meta = ck.meta
    assert meta.method == "asloss" and meta.layers == {"embedding": 0.1, "block3": 0.05}
    assert DatasetSpec.from_dict(meta.dataset) == tiny_spec
    assert len(meta.history) == 3 and 1 <= meta.best_epoch <= 3
    first = meta.history[0]
    assert {"train_loss", "train_ce", "val_accuracy", "val_macro_f1"} <= set(first)
    assert set(first["layers"]["block3"]) == {"agg", "sep", "scope", "as"}
    splits = build_splits(tiny_spec)
    for split in ("val", "test"):
        again = evaluate(ck.model, splits.split(split), meta.mean, meta.std,
                         InferenceOptions(device="cpu", batch_size=512), 10)
        assert again["accuracy"] == pytest.approx(meta.metrics[split]["accuracy"])
        assert again["macro_f1"] == pytest.approx(meta.metrics[split]["macro_f1"])
    # the stored validation metrics are those of the best epoch, chosen on validation
    assert meta.metrics["val"]["macro_f1"] == pytest.approx(max(r["val_macro_f1"] for r in meta.history))


def test_same_seed_same_result(tiny_spec):
    cfg = TrainConfig(method="asloss", epochs=2, batch_size=16)
    a = train(cfg, tiny_spec, progress=False)
    b = train(cfg, tiny_spec, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    c = train(TrainConfig(method="asloss", epochs=2, batch_size=16, seed=1), tiny_spec, progress=False)
    assert not torch.equal(a.model.fc.weight, c.model.fc.weight)


def test_cli_writes_checkpoint_and_prints_metrics(tmp_path, capsys):
    rc = main(["--method", "baseline", "--dataset", "digits-hard", "--samples-per-class", "10", "--val-per-class", "4",
               "--test-per-class", "4", "--epochs", "1", "--quiet", "--out", str(tmp_path / "base")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "test acc" in out and (tmp_path / "base.safetensors").exists()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--method", "asloss", "--layers", "nope:1"], "unknown layer 'nope'"),
        (["--method", "clonal"], "needs --baseline"),
        (["--dataset", "folder", "--data-root", "/definitely/missing"], "image folder not found"),
        (["--lr", "nan"], "lr must be a finite number"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, args, msg):
    proc = subprocess.run([sys.executable, "-m", "asl_core", "train", "--epochs", "1", "--quiet", "--samples-per-class", "8",
                           "--val-per-class", "3", "--test-per-class", "3", "--out", str(tmp_path / "x"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], proc.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_help_documents_flags():
    proc = subprocess.run([sys.executable, "-m", "asl_core", "train", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0
    for flag in ("--method", "--dataset", "--arch", "--layers", "--epochs", "--seed", "--out", "--baseline"):
        assert flag in proc.stdout
