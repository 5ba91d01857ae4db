"""The training loop: one plain loop for every method.

The method is an :class:`asl_core.objectives.Objective`: the loop taps the layers it asks for,
hands it the frozen teacher's logits when it needs them, optimises its total and logs its
terms. The best epoch is chosen on the validation split (macro-F1, earliest on ties); the test
split is evaluated once, on that epoch's weights. Same seed, same result on the CPU.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint, content_hash
from asl_core.data import DatasetSpec, Split, Splits, build_splits, normalize
from asl_core.engine.features import evaluate, run_model
from asl_core.errors import UserError
from asl_core.models import LayerTap, build_model, resolve_layers
from asl_core.objectives import Batch, LossOutput
from asl_core.runtime import pick_device, seed_everything
from asl_core.training.config import TrainConfig


@dataclass
class TrainResult:
    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None


class PrecomputedTeacher:
    """The frozen baseline's logits on the clean training images, computed once and looked up
    by sample position."""

    def __init__(self, teacher: LoadedCheckpoint, split: Split, device: torch.device):
        self.logits = torch.from_numpy(
            run_model(teacher.model, split, teacher.meta.mean, teacher.meta.std, (), device=device, batch_size=512).logits)

    def __call__(self, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.logits[idx].to(device)


def check_teacher(teacher: LoadedCheckpoint | None, method: str, splits: Splits) -> None:
    if teacher is None:
        raise UserError(f"method {method!r} needs a baseline/teacher checkpoint")
    if teacher.meta.num_classes != splits.num_classes:
        raise UserError(f"the baseline has {teacher.meta.num_classes} classes; the dataset has {splits.num_classes}")
    if tuple(teacher.meta.input_shape) != tuple(splits.input_shape):
        raise UserError(f"the baseline expects inputs {teacher.meta.input_shape}; the dataset gives {splits.input_shape}")


class EpochLog:
    """Sample-weighted means of the objective's terms over one epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.layer_sums: dict[str, dict[str, float]] = {}
        self.correct = self.seen = 0

    def add(self, out: LossOutput, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
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
        return row


def train(
    config: TrainConfig,
    spec: DatasetSpec,
    teacher: LoadedCheckpoint | None = None,
    splits: Splits | None = None,
    progress: bool = True,
    name: str = "",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train one model. ``teacher`` is the frozen baseline of methods that need one."""
    device = pick_device(config.device)
    splits = splits or build_splits(spec)
    c = splits.num_classes
    small = config.small_input if config.small_input is not None else splits.input_shape[-1] <= 64
    objective = config.build_objective()
    teacher_logits = None
    if objective.needs_teacher:
        check_teacher(teacher, config.method, splits)
        teacher.model.eval().requires_grad_(False)

    seed_everything(config.seed)
    model = build_model(config.arch, c, in_channels=splits.input_shape[0], small_input=small).to(device)
    layer_weights = objective.layers()
    resolve_layers(model, layer_weights)  # unknown names fail before any training
    if objective.needs_teacher:
        teacher_logits = PrecomputedTeacher(teacher, splits.train, device)

    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    x_all, y_all = splits.train.x, splits.train.y
    history: list[dict[str, Any]] = []
    best = (-1.0, -1, None)  # (val macro-F1, epoch, state)

    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.epochs + 1), desc=f"{config.method} {config.arch}", disable=not progress, file=sys.stderr,
               unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(y_all), generator=gen)
        log = EpochLog()
        for start in range(0, len(perm), config.batch_size):
            idx = perm[start : start + config.batch_size]
            if len(idx) < 2 and len(perm) > 1:
                continue  # BatchNorm needs two samples; the last singleton batch is dropped
            xb = normalize(x_all[idx].to(device, non_blocking=True), splits.mean, splits.std)
            yb = y_all[idx].to(device, non_blocking=True)
            with LayerTap(model, layer_weights) as tap:
                logits = model(xb)
            batch = Batch(logits, yb, tap.outputs, teacher_logits(idx, device) if teacher_logits is not None else None)
            out = objective(batch)
            loss = out.total
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {float(loss)} at epoch {epoch}; lower the learning rate or the loss weights")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            log.add(out, loss, logits, yb)
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
    parents = {}
    if teacher is not None and objective.needs_teacher:
        # A baseline trained in memory (the experiment) has no hash until it is saved; compute the
        # same hash the saved file would carry so that the lineage is recorded either way.
        teacher_hash = teacher.meta.content_hash or content_hash(teacher.model.state_dict(), teacher.meta)
        parents = {"baseline": teacher_hash, "baseline_name": teacher.meta.name or (teacher.path.stem if teacher.path else "")}
    meta = CheckpointMeta(
        arch=config.arch, num_classes=c, class_names=splits.class_names, input_shape=splits.input_shape,
        mean=splits.mean, std=splits.std, method=config.method, name=name, small_input=small,
        dataset=spec.to_dict(), hyperparams=config.hyperparams(), layers=layer_weights, history=history,
        metrics=metrics, best_epoch=best[1], parents=parents,
    )
    return TrainResult(model=model.cpu(), meta=meta)
