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

from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint
from asl_core.data import DatasetSpec, Split, Splits, build_splits, normalize, split_loader
from asl_core.data.samplers import epoch_batches, same_class_pairs
from asl_core.distributed import SINGLE, DistContext, current, gather_rows, local_device, shard_sizes, shard_slice
from asl_core.engine.features import evaluate, run_model
from asl_core.engine.options import InferenceOptions
from asl_core.engine.metrics import classification_metrics
from asl_core.errors import UserError
from asl_core.models import LayerTap, build_model, resolve_layers
from asl_core.objectives import Batch, LossOutput
from asl_core.runtime import pick_device, seed_everything
from asl_core.training.config import TrainConfig
from asl_core.training.teachers import FixedTeacher, LiveTeacher, OutOfFoldTeacher, TeacherSource

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


def teacher_source(teacher: TeacherSource | LoadedCheckpoint | None, config: TrainConfig, splits: Splits) -> TeacherSource:
    """What the loop calls for a teacher's logits. A source (:mod:`asl_core.training.teachers`,
    built by :func:`asl_core.training.teaching.prepare_teacher`) is used as given; a bare
    checkpoint is read live or fixed. Out-of-fold stand-ins are trained above the loop."""
    if isinstance(teacher, (LiveTeacher, FixedTeacher, OutOfFoldTeacher)):
        check_teacher(LoadedCheckpoint(model=None, meta=teacher.meta), config.method, splits)
        return teacher
    check_teacher(teacher, config.method, splits)
    if config.teacher_mode == "live":
        return LiveTeacher(teacher)
    if config.teacher_mode == "fixed":
        return FixedTeacher(teacher, splits.train)
    raise UserError("teacher_mode 'oof' needs the out-of-fold stand-ins: pass "
                    "asl_core.training.teaching.prepare_teacher(config, teacher, splits) as the teacher")


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


def gather_batch(batch: Batch, sizes: list[int], ctx: DistContext) -> Batch:
    """The global batch on every rank from each rank's slice (:func:`asl_core.distributed.gather_rows`):
    logits, labels, the tapped layers and the teacher's logits. The objective then sees exactly
    what a single process sees with the whole batch, so ASLoss's pairs span the global batch and
    the logged terms are global; each rank's gradient flows into its own slice only."""
    if not ctx.active:
        return batch
    teacher = batch.teacher_logits
    return Batch(
        logits=gather_rows(batch.logits, sizes, ctx),
        labels=gather_rows(batch.labels, sizes, ctx),
        features={name: gather_rows(h, sizes, ctx) for name, h in batch.features.items()},
        teacher_logits=None if teacher is None else gather_rows(teacher.detach(), sizes, ctx),
    )


def _eval_options(device: torch.device) -> InferenceOptions:
    """Evaluation during training: larger batches than extraction's default (no layer is kept)."""
    return InferenceOptions(device=device, batch_size=512)


def evaluate_split(model: nn.Module, split: Split, splits: Splits, device: torch.device, num_classes: int,
                   ctx: DistContext = SINGLE) -> dict:
    """:func:`asl_core.engine.features.evaluate`, sharded over the ranks: each runs its contiguous
    slice and the logits are gathered in order, so every rank gets the whole split's metrics."""
    if not ctx.active or len(split) < ctx.world_size:
        return evaluate(model, split, splits.mean, splits.std, _eval_options(device), num_classes)
    part = shard_slice(len(split), ctx)
    own = split.subset(part)
    feats = run_model(model, own, splits.mean, splits.std, (), _eval_options(device))
    logits = torch.from_numpy(feats.logits).to(device)
    logits = gather_rows(logits, shard_sizes(len(split), ctx.world_size), ctx).cpu()
    metrics = classification_metrics(split.y.numpy(), logits.argmax(1).numpy(), num_classes)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, split.y))
    return metrics


class _RankBatches:
    """This rank's slice of each global batch of one epoch (:func:`epoch_batches`, drawn from
    ``gen`` when an epoch starts), tagged with the global batch's size. A last batch too small
    to give every process two samples is dropped (BatchNorm needs two)."""

    def __init__(self, labels: torch.Tensor, config: TrainConfig, gen: torch.Generator, num_classes: int, ctx: DistContext):
        self.labels, self.config, self.gen, self.num_classes, self.ctx = labels, config, gen, num_classes, ctx

    def __iter__(self):
        for global_idx in epoch_batches(self.labels, self.config.batch_size, self.gen, self.config.sampler, self.num_classes):
            sizes = shard_sizes(len(global_idx), self.ctx.world_size)
            if min(sizes) < 2 and len(self.labels) > 1:
                continue
            yield global_idx[shard_slice(len(global_idx), self.ctx)], len(global_idx)


def train(
    config: TrainConfig,
    spec: DatasetSpec,
    teacher: TeacherSource | LoadedCheckpoint | None = None,
    splits: Splits | None = None,
    progress: bool = True,
    name: str = "",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    dist_ctx: DistContext | None = None,
) -> TrainResult:
    """Train one model. ``teacher`` is where the logits of the frozen teacher come from, for
    methods that need one: a teacher source (``asl_core.training.teaching.prepare_teacher`` gives
    the out-of-fold one), or a checkpoint read live / fixed (``config.teacher_mode``).

    Under torchrun (``dist_ctx``, default: the initialised process group) the model is wrapped in
    DistributedDataParallel: ``config.batch_size`` is the *global* batch, every rank draws the same
    global batches and trains on its contiguous slice, and the objective sees the gathered global
    batch (:func:`gather_batch`). Every rank ends with the same weights and history; the caller
    saves on rank 0."""
    ctx = current() if dist_ctx is None else dist_ctx
    device = local_device(pick_device(config.device), ctx)
    splits = splits or build_splits(spec)
    c = splits.num_classes
    small = config.small_input if config.small_input is not None else splits.input_shape[-1] <= 64
    objective = config.build_objective()
    objective.prepare(torch.bincount(splits.train.y, minlength=c))
    augment = config.augmentation(flips_allowed=spec.flips_allowed)
    source, parents = None, {}
    if objective.needs_teacher:
        source = teacher_source(teacher, config, splits)

    seed_everything(config.seed)
    model = build_model(config.arch, c, in_channels=splits.input_shape[0], small_input=small).to(device)
    layer_weights = objective.layers()
    resolve_layers(model, layer_weights)  # unknown names fail before any training
    if source is not None:
        source.to(device)
        parents = dict(source.parents)

    net: nn.Module = model
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    # its own stream (one per rank): batch order does not depend on it
    aug_gen = torch.Generator().manual_seed(config.seed + 7919 + 104729 * ctx.rank)
    y_all = splits.train.y
    # Batches come through a DataLoader. The batch sampler yields exactly the index lists the
    # hand-written loop drew (same generator, same order), and augmentation stays one batched,
    # seeded warp on the device after collation: faster on a GPU than per-sample transforms, and
    # the committed results stay bit-for-bit reproducible (tests/core/test_reproducible.py).
    loader = split_loader(splits.train, batches=_RankBatches(y_all, config, gen, c, ctx), device=device, persistent=True)
    history: list[dict[str, Any]] = []
    best = (-1.0, -1, None)  # (val macro-F1, epoch, state)

    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.epochs + 1), desc=f"{config.method} {config.arch}", disable=not (progress and ctx.is_main),
               file=sys.stderr, unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        log = EpochLog(c)
        for x_cpu, y_cpu, idx, n_global in loader:
            sizes = shard_sizes(n_global, ctx.world_size)
            x_raw = augment(x_cpu.to(device, non_blocking=True), aug_gen)
            xb = normalize(x_raw, splits.mean, splits.std)
            yb = y_cpu.to(device, non_blocking=True)
            with LayerTap(model, layer_weights) as tap:
                logits = net(xb)
            t_logits = source(x_raw, idx) if source is not None else None
            batch = gather_batch(Batch(logits, yb, dict(tap.outputs), t_logits), sizes, ctx)
            out = objective(batch)
            loss = out.total
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {float(loss)} at epoch {epoch}; lower the learning rate or the loss weights")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            log.add(out, loss, batch.logits, batch.labels, batch.teacher_logits)
        val = evaluate_split(model, splits.val, splits, device, c, ctx)
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
        "val": evaluate_split(model, splits.val, splits, device, c, ctx),
        "test": evaluate_split(model, splits.test, splits, device, c, ctx),
    }
    diagnostics, warnings = diagnose(history)
    if splits.notes:  # e.g. the files of an image folder that were skipped as unreadable, named
        diagnostics["dataset_notes"] = list(splits.notes)
    hyperparams = config.hyperparams()
    if config.augment:
        hyperparams["augmentation"] = augment.to_dict()  # with the flips the dataset allows
    if ctx.active:
        hyperparams["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend,
                                      "per_process_batch": shard_sizes(config.batch_size, ctx.world_size)[0]}
    meta = CheckpointMeta(
        arch=config.arch, num_classes=c, class_names=splits.class_names, input_shape=splits.input_shape,
        mean=splits.mean, std=splits.std, method=config.method, name=name, small_input=small,
        dataset=spec.to_dict(), hyperparams=hyperparams, layers=layer_weights, history=history,
        metrics=metrics, best_epoch=best[1], parents=parents, diagnostics=diagnostics, warnings=warnings,
    )
    return TrainResult(model=model.cpu(), meta=meta)
