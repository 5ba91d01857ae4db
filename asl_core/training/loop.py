"""The training loop: one plain loop for every method.

The method is an :class:`asl_core.objectives.Objective`: the loop taps the layers it asks for,
hands it the frozen teacher's logits when it needs them, optimises its total and logs its
terms. The best epoch is chosen on the validation split (macro-F1, earliest on ties); the test
split is evaluated once, on that epoch's weights. Same seed, same result on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint, content_hash
from asl_core.data import DatasetSpec, Splits, build_splits, normalize
from asl_core.data.samplers import epoch_batches, same_class_pairs
from asl_core.engine.features import evaluate
from asl_core.errors import UserError
from asl_core.models import LayerTap, build_model, resolve_layers
from asl_core.objectives import Batch, LossOutput
from asl_core.runtime import pick_device, seed_everything
from asl_core.settings import get_settings
from asl_core.training.config import TrainConfig
from asl_core.training.teachers import FixedTeacher, FoldTeachers, LiveTeacher, OutOfFoldTeacher, train_fold_baselines

# A clonal run whose confusing set is {y} for more than this share of its samples is not ClonalNet
SINGLETON_ALARM = 0.9


@dataclass
class TrainResult:
    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None


def check_teacher(teacher: LoadedCheckpoint | None, method: str, splits: Splits) -> None:
    if teacher is None:
        raise UserError(f"method {method!r} needs a baseline/teacher checkpoint")
    if teacher.meta.num_classes != splits.num_classes:
        raise UserError(f"the baseline has {teacher.meta.num_classes} classes; the dataset has {splits.num_classes}")
    if tuple(teacher.meta.input_shape) != tuple(splits.input_shape):
        raise UserError(f"the baseline expects inputs {teacher.meta.input_shape}; the dataset gives {splits.input_shape}")


class EpochLog:
    """Sample-weighted means of the objective's terms over one epoch, and the mechanism counts:
    same-class pairs per class, the teacher's accuracy on the batches and the sizes of
    ClonalNet's confusing sets."""

    def __init__(self, num_classes: int) -> None:
        self.sums: dict[str, float] = {}
        self.layer_sums: dict[str, dict[str, float]] = {}
        self.correct = self.seen = 0
        self.pairs = torch.zeros(num_classes, dtype=torch.long)
        self.set_sizes = torch.zeros(num_classes + 1, dtype=torch.long)  # histogram of |S| (index = size)
        self.teacher_correct = self.teacher_seen = 0

    def add(self, out: LossOutput, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            teacher_logits: torch.Tensor | None = None) -> None:
        n = len(labels)
        self.pairs += same_class_pairs(labels, len(self.pairs))
        if teacher_logits is not None:
            self.teacher_correct += int((teacher_logits.argmax(1) == labels).sum())
            self.teacher_seen += n
        sizes = out.stats.get("confusing_set_sizes")
        if sizes is not None:
            self.set_sizes += torch.bincount(sizes.long().flatten(), minlength=len(self.set_sizes))[: len(self.set_sizes)]
        for k, v in {**out.terms, "loss": float(loss.detach())}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        for layer, vals in out.layer_terms.items():
            sums = self.layer_sums.setdefault(layer, {})
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v * n
        self.correct += int((logits.argmax(1) == labels).sum())
        self.seen += n

    def row(self) -> dict[str, Any]:
        seen = max(self.seen, 1)
        row = {f"train_{k}": v / seen for k, v in self.sums.items()}
        row["train_accuracy"] = self.correct / seen
        row["same_class_pairs"] = self.pairs.tolist()
        if self.teacher_seen:
            row["teacher_train_accuracy"] = self.teacher_correct / self.teacher_seen
        if int(self.set_sizes.sum()):
            row["confusing_set_hist"] = self.set_sizes.tolist()
            row["confusing_set_mean"] = float((self.set_sizes * torch.arange(len(self.set_sizes))).sum() / self.set_sizes.sum())
        return row


def baseline_recipe(config: TrainConfig, teacher: LoadedCheckpoint) -> TrainConfig:
    """The baseline's own training recipe, from its metadata (for its out-of-fold stand-ins)."""
    hp = teacher.meta.hyperparams or {}
    same = {k: hp[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "sampler") if k in hp}
    aug = hp.get("augmentation", "unrecorded")
    if aug is None:
        same["augment"] = False
    elif isinstance(aug, dict):
        same.update(augment=True, aug_rotation=aug.get("rotation", config.aug_rotation),
                    aug_shift=aug.get("shift", config.aug_shift), aug_scale=aug.get("scale", config.aug_scale))
    return dataclasses.replace(config, method="baseline", method_params={}, arch=teacher.meta.arch, **same)


def make_teacher(config: TrainConfig, teacher: LoadedCheckpoint, splits: Splits, device: torch.device,
                 folds: FoldTeachers | None, progress: bool) -> tuple[Any, dict[str, str]]:
    """The teacher source for ``config.teacher_mode`` and what the checkpoint records about it."""
    teacher_hash = teacher.meta.content_hash or content_hash(teacher.model.state_dict(), teacher.meta)
    parents = {"baseline": teacher_hash, "baseline_name": teacher.meta.name or (teacher.path.stem if teacher.path else ""),
               "teacher_mode": config.teacher_mode}
    if config.teacher_mode == "live":
        return LiveTeacher(teacher, device), parents
    if config.teacher_mode == "fixed":
        return FixedTeacher(teacher, splits.train, device), parents
    if folds is None:
        recipe = baseline_recipe(config, teacher)
        base_seed = int(teacher.meta.hyperparams.get("seed", config.seed))
        folds = train_fold_baselines(recipe, splits, config.teacher_folds, base_seed, get_settings().cache_dir / "training",
                                     progress=progress)
    if len(folds.fold_of) != len(splits.train):
        raise UserError(f"the out-of-fold teachers cover {len(folds.fold_of)} training samples; the data has {len(splits.train)}")
    parents["fold_baselines"] = ",".join(folds.hashes)
    return OutOfFoldTeacher(folds, device), parents


def diagnose(history: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Whole-run mechanism figures from the per-epoch rows, and the warnings they call for."""
    diagnostics: dict[str, Any] = {}
    warnings: list[str] = []
    if history and "same_class_pairs" in history[0]:
        per_class = torch.tensor([row["same_class_pairs"] for row in history]).float().mean(0)
        diagnostics["same_class_pairs_per_epoch"] = [round(float(v), 1) for v in per_class]
    hists = [row["confusing_set_hist"] for row in history if "confusing_set_hist" in row]
    if hists:
        total = torch.tensor(hists).sum(0).double()
        mean = float((total * torch.arange(len(total))).sum() / total.sum())
        singleton = float(total[1] / total.sum())
        diagnostics.update(confusing_set_mean=round(mean, 4), confusing_set_singleton_fraction=round(singleton, 4),
                           confusing_set_hist=[int(v) for v in total])
        if singleton > SINGLETON_ALARM:
            warnings.append(f"NOT ClonalNet: the confusing set is {{y}} alone for {singleton:.1%} of the training samples "
                            f"(mean |S| {mean:.2f}); the baseline fits its training data, so R_pick is plain cross-entropy. "
                            "Use out-of-fold teachers (teacher_mode 'oof') or augmentation.")
    accs = [row["teacher_train_accuracy"] for row in history if "teacher_train_accuracy" in row]
    if accs:
        diagnostics["teacher_train_accuracy"] = round(sum(accs) / len(accs), 4)
    return diagnostics, tuple(warnings)


def train(
    config: TrainConfig,
    spec: DatasetSpec,
    teacher: LoadedCheckpoint | None = None,
    splits: Splits | None = None,
    progress: bool = True,
    name: str = "",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    folds: FoldTeachers | None = None,
) -> TrainResult:
    """Train one model. ``teacher`` is the frozen baseline of methods that need one; with
    ``teacher_mode="oof"``, ``folds`` are its out-of-fold stand-ins (trained and cached here
    when not given)."""
    device = pick_device(config.device)
    splits = splits or build_splits(spec)
    c = splits.num_classes
    small = config.small_input if config.small_input is not None else splits.input_shape[-1] <= 64
    objective = config.build_objective()
    augment = config.augmentation(flips_allowed=spec.flips_allowed)
    teacher_source, parents = None, {}
    if objective.needs_teacher:
        check_teacher(teacher, config.method, splits)
        teacher.model.eval().requires_grad_(False)

    seed_everything(config.seed)
    model = build_model(config.arch, c, in_channels=splits.input_shape[0], small_input=small).to(device)
    layer_weights = objective.layers()
    resolve_layers(model, layer_weights)  # unknown names fail before any training
    if objective.needs_teacher:
        teacher_source, parents = make_teacher(config, teacher, splits, device, folds, progress)

    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 7919)  # its own stream: batch order does not depend on it
    x_all, y_all = splits.train.x, splits.train.y
    history: list[dict[str, Any]] = []
    best = (-1.0, -1, None)  # (val macro-F1, epoch, state)

    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.epochs + 1), desc=f"{config.method} {config.arch}", disable=not progress, file=sys.stderr,
               unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        log = EpochLog(c)
        for idx in epoch_batches(y_all, config.batch_size, gen, config.sampler, c):
            if len(idx) < 2 and len(y_all) > 1:
                continue  # BatchNorm needs two samples; the last singleton batch is dropped
            x_raw = augment(x_all[idx].to(device, non_blocking=True), aug_gen)
            xb = normalize(x_raw, splits.mean, splits.std)
            yb = y_all[idx].to(device, non_blocking=True)
            with LayerTap(model, layer_weights) as tap:
                logits = model(xb)
            t_logits = teacher_source(x_raw, idx) if teacher_source is not None else None
            out = objective(Batch(logits, yb, tap.outputs, t_logits))
            loss = out.total
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {float(loss)} at epoch {epoch}; lower the learning rate or the loss weights")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            log.add(out, loss, logits, yb, t_logits)
        val = evaluate(model, splits.val, splits.mean, splits.std, device, c)
        row: dict[str, Any] = {"epoch": epoch, "lr": float(sched.get_last_lr()[0])}
        row.update(log.row())
        row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"])
        if log.layer_sums:
            row["layers"] = {n: {k: v / max(log.seen, 1) for k, v in s.items()} for n, s in log.layer_sums.items()}
        history.append(row)
        if val["macro_f1"] > best[0]:
            best = (val["macro_f1"], epoch, copy.deepcopy(model.state_dict()))
        bar.set_postfix(loss=f"{row.get('train_loss', 0):.3f}", val_acc=f"{val['accuracy']:.3f}", best=best[1])
        if on_epoch is not None:
            on_epoch(row)

    model.load_state_dict(best[2])
    model.eval()
    metrics = {
        "val": evaluate(model, splits.val, splits.mean, splits.std, device, c),
        "test": evaluate(model, splits.test, splits.mean, splits.std, device, c),
    }
    diagnostics, warnings = diagnose(history)
    hyperparams = config.hyperparams()
    if config.augment:
        hyperparams["augmentation"] = augment.to_dict()  # with the flips the dataset allows
    meta = CheckpointMeta(
        arch=config.arch, num_classes=c, class_names=splits.class_names, input_shape=splits.input_shape,
        mean=splits.mean, std=splits.std, method=config.method, name=name, small_input=small,
        dataset=spec.to_dict(), hyperparams=hyperparams, layers=layer_weights, history=history,
        metrics=metrics, best_epoch=best[1], parents=parents, diagnostics=diagnostics, warnings=warnings,
    )
    return TrainResult(model=model.cpu(), meta=meta)
