"""The methods' mechanisms fire, and say so when they do not (issue: the methods as the papers run
them): per-batch augmentation, class-balanced batches, ClonalNet's teacher on augmented batches
or out of fold, and the alarm for a baseline that memorised its training set."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asl_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.data.augment import NO_AUGMENTATION, Augmentation
from asl_core.data.samplers import epoch_batches, same_class_pairs
from asl_core.training import TrainConfig, train
from asl_core.training.loop import SINGLETON_ALARM
from asl_core.training.teachers import OutOfFoldTeacher, stratified_folds
from asl_core.training.teaching import prepare_teacher, train_fold_baselines


def test_augmentation_is_seeded_bounded_and_flips_only_when_allowed():
    x = torch.rand(16, 1, 8, 8)
    aug = Augmentation(rotation=12, shift=0.1, scale=0.1)
    a = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4)))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(NO_AUGMENTATION(x, torch.Generator()), x)
    # a pure flip mirrors the image exactly; the digits presets never allow it
    arrow = torch.zeros(1, 1, 4, 4)
    arrow[..., 0] = 1.0
    flipped = Augmentation(0, 0, 0, flip=True)(arrow.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    mirrored = (flipped[..., -1] > 0.99).all(dim=(1, 2))
    assert 0 < int(mirrored.sum()) < 64  # about half of them
    assert not get_spec("digits-hard").flips_allowed and not get_spec("mnist-lt").flips_allowed
    assert TrainConfig().augmentation(flips_allowed=False).flip is False


def test_balanced_batches_give_tail_classes_same_class_pairs():
    labels = torch.tensor([0] * 200 + [1] * 50 + [2] * 5)
    gen = torch.Generator().manual_seed(0)
    random_pairs = sum(same_class_pairs(labels[b], 3) for b in epoch_batches(labels, 32, gen, "random"))
    balanced = epoch_batches(labels, 32, torch.Generator().manual_seed(0), "balanced")
    balanced_pairs = sum(same_class_pairs(labels[b], 3) for b in balanced)
    assert sum(len(b) for b in balanced) == len(labels)
    assert balanced_pairs[2] > 10 * max(int(random_pairs[2]), 1)
    # every image of the tail class is used before any repeats
    tail = [int(i) for b in balanced for i in b if labels[i] == 2]
    assert sorted(tail[:5]) == [250, 251, 252, 253, 254]


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A baseline that fits its (tiny, unaugmented) training set: train accuracy 1."""
    spec = get_spec("digits", samples_per_class=8, val_per_class=5, test_per_class=5)
    splits = build_splits(spec)
    res = train(TrainConfig(epochs=30, augment=False, device="cpu", lr=5e-3), spec, splits=splits, progress=False, name="base")
    path = save_checkpoint(res.model, res.meta, tmp_path_factory.mktemp("mem") / "base")
    assert res.meta.history[-1]["train_accuracy"] == 1.0
    return spec, splits, load_checkpoint(path)


def test_a_memorised_baseline_is_caught_and_reported(memorised, tmp_path, capsys):
    spec, splits, base = memorised
    config = TrainConfig(method="clonal", epochs=2, augment=False, teacher_mode="fixed", device="cpu")
    res = train(config, spec, teacher=base, splits=splits, progress=False)
    diag = res.meta.diagnostics
    assert diag["confusing_set_singleton_fraction"] > SINGLETON_ALARM
    assert diag["teacher_train_accuracy"] == 1.0
    assert res.meta.warnings and res.meta.warnings[0].startswith("NOT ClonalNet")
    assert all("confusing_set_hist" in row for row in res.meta.history)
    # it survives the file, and the CLI says it loudly
    assert load_checkpoint(save_checkpoint(res.model, res.meta, tmp_path / "c")).meta.warnings == res.meta.warnings
    from asl_core.training.cli import main

    assert main(["--method", "clonal", "--baseline", str(base.path), "--teacher-mode", "fixed", "--no-augment",
                 "--epochs", "1", "--quiet", "--out", str(tmp_path / "c2")]) == 0
    assert "WARNING: NOT ClonalNet" in capsys.readouterr().err


def test_out_of_fold_teachers_never_saw_their_fold_and_widen_the_confusing_set(memorised):
    spec, splits, base = memorised
    recipe = TrainConfig(epochs=30, augment=False, device="cpu", lr=5e-3)
    folds = train_fold_baselines(recipe, splits, 2, seed=0)
    fold_of = folds.fold_of
    assert fold_of.tolist() == stratified_folds(splits.train.y, 2, 0).tolist()
    assert set(fold_of.tolist()) == {0, 1} and len(fold_of) == len(splits.train)
    for k, model in enumerate(folds.models):  # fold k's baseline is trained on the other fold only
        assert model.meta.name == f"fold{k}-of-2" and len(model.meta.history) == 30
    teacher = OutOfFoldTeacher(folds, torch.device("cpu"))
    idx = torch.arange(len(splits.train))
    x = splits.train.x
    logits = teacher(x, idx)
    held_out_acc = float((logits.argmax(1) == splits.train.y).float().mean())
    assert held_out_acc < 1.0  # unlike the memorised baseline, it has not seen these images
    config = TrainConfig(method="clonal", epochs=2, augment=False, teacher_mode="oof", teacher_folds=2, device="cpu")
    res = train(config, spec, teacher=prepare_teacher(config, base, splits, folds), splits=splits, progress=False)
    assert res.meta.diagnostics["confusing_set_singleton_fraction"] < SINGLETON_ALARM and not res.meta.warnings
    assert res.meta.parents["fold_baselines"] == ",".join(folds.hashes) and res.meta.parents["teacher_mode"] == "oof"


def test_same_class_pairs_are_logged_per_class(memorised):
    spec, splits, _ = memorised
    res = train(TrainConfig(epochs=1, device="cpu", sampler="balanced"), spec, splits=splits, progress=False)
    pairs = res.meta.history[0]["same_class_pairs"]
    assert len(pairs) == 10 and all(p > 0 for p in pairs)
    assert res.meta.hyperparams["sampler"] == "balanced" and res.meta.hyperparams["augmentation"]["rotation"] == 12.0
