r"""Training: baseline (CE), ASLoss (CE + ASLoss on chosen layers), ClonalNet (focusing-picking
loss against a frozen baseline) and knowledge distillation (CE + Hinton KD).

    python -m asl_core.train --method asloss --dataset digits-hard --layers embedding:1.0 \
        --epochs 40 --seed 0 --out checkpoints/asloss

The best epoch is chosen on the validation split (macro-F1, earliest on ties); the test
split is evaluated once, on that epoch's weights. Same seed, same result on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointMeta, LoadedCheckpoint, content_hash, load_checkpoint, save_checkpoint
from .data import DatasetSpec, Split, Splits, build_splits, get_spec, normalize
from .errors import UserError, cli_entry
from .losses import DISTANCES, FocusingPickingLoss, MultiLayerASLoss, kd_terms
from .metrics import classification_metrics
from .models import ARCHITECTURES, LayerTap, build_model, embedding_layer, resolve_layers

TRAIN_METHODS = ("baseline", "asloss", "clonal", "kd")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "baseline"
    arch: str = "digits_cnn"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    # Defaults of the method weights below (as_weight, distance, radius, lambda_scope; fp_alpha,
    # fp_beta; kd_temperature, kd_weight) were chosen by the grid search in asl_core.experiment_search:
    # digits-hard, training seeds 100-102, highest mean VALIDATION macro-F1 (the test split is never
    # read). The whole search is in docs/results/digits-hard.md and digits-hard_search.json;
    # `python -m asl_core.experiment --search ...` re-runs it. Not searched: lambda_agg, lambda_sep,
    # fp_eps, fp_temperature (METHODS.md values) and the optimiser settings shared by every method.
    # ASLoss: layer -> weight; empty means the architecture's embedding layer with `as_weight`
    layers: dict[str, float] = field(default_factory=dict)
    as_weight: float = 0.03
    distance: str = "cosine"
    radius: float = 10.0
    lambda_agg: float = 1.0
    lambda_sep: float = 1.0
    lambda_scope: float = 0.01
    # ClonalNet (METHODS.md's alpha = beta = 1 scored lowest of the 9 grid points on validation)
    fp_eps: float = 0.1
    fp_temperature: float = 2.0
    fp_alpha: float = 1.0
    fp_beta: float = 0.0
    # KD
    kd_temperature: float = 2.0
    kd_weight: float = 0.5
    small_input: bool | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in TRAIN_METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(TRAIN_METHODS)}")
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.distance not in DISTANCES:
            raise UserError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1")
        for name in ("lr", "weight_decay", "as_weight", "radius", "lambda_agg", "lambda_sep", "lambda_scope",
                     "fp_alpha", "fp_beta", "kd_weight", "kd_temperature", "fp_temperature"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise UserError(f"{name} must be a finite number >= 0, got {v}")

    def layer_weights(self) -> dict[str, float]:
        return dict(self.layers) or {embedding_layer(self.arch): self.as_weight}

    def hyperparams(self) -> dict[str, Any]:
        keep = ["epochs", "batch_size", "lr", "weight_decay", "seed"]
        if self.method == "asloss":
            keep += ["as_weight", "distance", "radius", "lambda_agg", "lambda_sep", "lambda_scope"]
        if self.method == "clonal":
            keep += ["fp_eps", "fp_temperature", "fp_alpha", "fp_beta"]
        if self.method == "kd":
            keep += ["kd_temperature", "kd_weight"]
        return {k: getattr(self, k) for k in keep}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was asked for but no GPU is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@torch.inference_mode()
def predict_logits(model: nn.Module, split: Split, mean, std, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """``[N, C]`` logits on the CPU. The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        xb = normalize(split.x[start : start + batch_size].to(device), mean, std)
        out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, split: Split, mean, std, device: torch.device, num_classes: int) -> dict[str, Any]:
    logits = predict_logits(model, split, mean, std, device)
    metrics = classification_metrics(split.y.numpy(), logits.argmax(1).numpy(), num_classes)
    metrics["loss"] = float(F.cross_entropy(logits, split.y))
    return metrics


@dataclass
class TrainResult:
    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None


def _teacher_logits(teacher: LoadedCheckpoint, split: Split, device: torch.device) -> torch.Tensor:
    return predict_logits(teacher.model.to(device), split, teacher.meta.mean, teacher.meta.std, device)


def train(
    config: TrainConfig,
    spec: DatasetSpec,
    teacher: LoadedCheckpoint | None = None,
    splits: Splits | None = None,
    progress: bool = True,
    name: str = "",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train one model. ``teacher`` is the frozen baseline for ``clonal`` and ``kd``."""
    device = pick_device(config.device)
    splits = splits or build_splits(spec)
    c = splits.num_classes
    in_ch = splits.input_shape[0]
    small = config.small_input if config.small_input is not None else splits.input_shape[-1] <= 64
    if config.method in ("clonal", "kd"):
        if teacher is None:
            raise UserError(f"method {config.method!r} needs a baseline/teacher checkpoint")
        if teacher.meta.num_classes != c:
            raise UserError(f"the baseline has {teacher.meta.num_classes} classes; the dataset has {c}")
        if tuple(teacher.meta.input_shape) != tuple(splits.input_shape):
            raise UserError(f"the baseline expects inputs {teacher.meta.input_shape}; the dataset gives {splits.input_shape}")
        teacher.model.eval().requires_grad_(False)

    seed_everything(config.seed)
    model = build_model(config.arch, c, in_channels=in_ch, small_input=small).to(device)
    layer_weights = config.layer_weights() if config.method == "asloss" else {}
    resolve_layers(model, layer_weights)  # unknown names fail before any training
    as_loss = (
        MultiLayerASLoss(layer_weights, distance=config.distance, radius=config.radius, lambda_agg=config.lambda_agg,
                         lambda_sep=config.lambda_sep, lambda_scope=config.lambda_scope)
        if layer_weights else None
    )
    fp_loss = FocusingPickingLoss(config.fp_eps, config.fp_temperature, config.fp_alpha, config.fp_beta)
    teacher_train = _teacher_logits(teacher, splits.train, device) if teacher is not None else None

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
        sums: dict[str, float] = {}
        layer_sums: dict[str, dict[str, float]] = {n: {} for n in layer_weights}
        correct = seen = 0
        for start in range(0, len(perm), config.batch_size):
            idx = perm[start : start + config.batch_size]
            if len(idx) < 2 and len(perm) > 1:
                continue  # BatchNorm needs two samples; the last singleton batch is dropped
            xb = normalize(x_all[idx].to(device, non_blocking=True), splits.mean, splits.std)
            yb = y_all[idx].to(device, non_blocking=True)
            terms: dict[str, float] = {}
            with LayerTap(model, layer_weights) as tap:
                logits = model(xb)
            if config.method == "clonal":
                tb = teacher_train[idx].to(device)
                l_cls, r_pick, r_neg = fp_loss.terms(logits, tb, yb)
                loss = l_cls + fp_loss.alpha * r_pick + fp_loss.beta * r_neg
                terms.update(fp_cls=float(l_cls.detach()), fp_pick=float(r_pick.detach()), fp_neg=float(r_neg.detach()))
            elif config.method == "kd":
                ce, kd = kd_terms(logits, teacher_train[idx].to(device), yb, config.kd_temperature)
                loss = ce + config.kd_weight * kd
                terms.update(ce=float(ce.detach()), kd=float(kd.detach()))
            else:
                loss = F.cross_entropy(logits, yb)
                terms["ce"] = float(loss.detach())
                if as_loss is not None:
                    as_total, logs = as_loss(tap.outputs, yb)
                    loss = loss + as_total
                    for n, vals in logs.items():
                        for k, v in vals.items():
                            layer_sums[n][k] = layer_sums[n].get(k, 0.0) + v * len(idx)
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {float(loss)} at epoch {epoch}; lower the learning rate or the loss weights")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            terms["loss"] = float(loss.detach())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        val = evaluate(model, splits.val, splits.mean, splits.std, device, c)
        row: dict[str, Any] = {"epoch": epoch, "lr": float(sched.get_last_lr()[0])}
        row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
        row["train_accuracy"] = correct / max(seen, 1)
        row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"])
        if layer_weights:
            row["layers"] = {n: {k: v / max(seen, 1) for k, v in s.items()} for n, s in layer_sums.items()}
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
    if teacher is not None:
        # A baseline trained in memory (experiment.py) has no hash until it is saved; compute the
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


# --------------------------------------------------------------------------- CLI


def parse_layers(text: str | None) -> dict[str, float]:
    """``"embedding:1.0,block3:0.5"`` -> ``{"embedding": 1.0, "block3": 0.5}`` (weight defaults to 1)."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, weight = part.partition(":")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise UserError(f"bad layer weight in {part!r}; use NAME:WEIGHT") from None
    return out


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits-hard",
                   help="preset (digits, digits-hard) or a source: folder, mnist, fashion-mnist, cifar10 (with --data-root)")
    g.add_argument("--data-root", help="image folder (one sub-folder per class) or torchvision dataset root")
    g.add_argument("--samples-per-class", type=int, help="cap on the largest training class (n_max)")
    g.add_argument("--imbalance", type=float, help="long-tail ratio rho (largest/smallest class)")
    g.add_argument("--noise", type=float, help="std of additive Gaussian noise, pixels in [0, 1]")
    g.add_argument("--blur", type=float, help="Gaussian blur sigma in pixels")
    g.add_argument("--occlusion", type=float, help="side of an occluding square, fraction of the image side")
    g.add_argument("--val-per-class", type=int)
    g.add_argument("--test-per-class", type=int)
    g.add_argument("--image-size", type=int, help="resize images to this side (folders default to 32)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB) for image folders")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the splits and the corruption")


DATA_FLAGS = ("--dataset", "--data-root", "--samples-per-class", "--imbalance", "--noise", "--blur", "--occlusion",
              "--val-per-class", "--test-per-class", "--image-size", "--channels", "--data-seed")


def data_args_given(argv: list[str]) -> bool:
    """Whether the command line says anything about the data (``--noise 0.1`` or ``--noise=0.1``).
    Without it, clonal/KD train on the baseline's own dataset spec."""
    return any(tok.split("=", 1)[0] in DATA_FLAGS for tok in argv)


def spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    overrides = dict(
        samples_per_class=args.samples_per_class, imbalance=args.imbalance, noise=args.noise, blur=args.blur,
        occlusion=args.occlusion, val_per_class=args.val_per_class, test_per_class=args.test_per_class,
        image_size=args.image_size, channels=args.channels, seed=args.data_seed,
    )
    if args.dataset in ("digits", "digits-hard"):
        return get_spec(args.dataset, **overrides)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return DatasetSpec(source=args.dataset, root=args.data_root, name=Path(args.data_root or args.dataset).name, **overrides)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asl_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=TRAIN_METHODS, default="baseline")
    p.add_argument("--arch", default="digits_cnn", help=f"one of {', '.join(ARCHITECTURES)}")
    p.add_argument("--out", required=True, help="checkpoint path; .safetensors is appended")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--small-input", choices=("auto", "yes", "no"), default="auto",
                   help="CIFAR-style stem for torchvision models (auto: images <= 64 px)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataset_args(p)
    g = p.add_argument_group("ASLoss (--method asloss)")
    g.add_argument("--layers", help="NAME:WEIGHT,... (default: the embedding layer with --as-weight)")
    g.add_argument("--as-weight", type=float, default=TrainConfig.as_weight)
    g.add_argument("--distance", choices=tuple(DISTANCES), default=TrainConfig.distance)
    g.add_argument("--radius", type=float, default=TrainConfig.radius)
    g.add_argument("--lambda-agg", type=float, default=TrainConfig.lambda_agg)
    g.add_argument("--lambda-sep", type=float, default=TrainConfig.lambda_sep)
    g.add_argument("--lambda-scope", type=float, default=TrainConfig.lambda_scope)
    g = p.add_argument_group("ClonalNet and KD (--method clonal / kd)")
    g.add_argument("--baseline", "--teacher", dest="baseline", help="the frozen baseline (teacher) checkpoint")
    g.add_argument("--fp-alpha", type=float, default=TrainConfig.fp_alpha)
    g.add_argument("--fp-beta", type=float, default=TrainConfig.fp_beta)
    g.add_argument("--fp-eps", type=float, default=TrainConfig.fp_eps)
    g.add_argument("--fp-temperature", type=float, default=TrainConfig.fp_temperature)
    g.add_argument("--kd-temperature", type=float, default=TrainConfig.kd_temperature)
    g.add_argument("--kd-weight", type=float, default=TrainConfig.kd_weight)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        method=args.method, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, layers=parse_layers(args.layers), as_weight=args.as_weight,
        distance=args.distance, radius=args.radius, lambda_agg=args.lambda_agg, lambda_sep=args.lambda_sep,
        lambda_scope=args.lambda_scope, fp_eps=args.fp_eps, fp_temperature=args.fp_temperature, fp_alpha=args.fp_alpha,
        fp_beta=args.fp_beta, kd_temperature=args.kd_temperature, kd_weight=args.kd_weight,
        small_input={"auto": None, "yes": True, "no": False}[args.small_input], device=args.device,
    )


def format_metrics(meta: CheckpointMeta) -> str:
    v, t = meta.metrics["val"], meta.metrics["test"]
    return (f"{meta.name or meta.method:<12} val acc {v['accuracy']:.4f}  val macro-F1 {v['macro_f1']:.4f}  "
            f"test acc {t['accuracy']:.4f}  test macro-F1 {t['macro_f1']:.4f}  (best epoch {meta.best_epoch})")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    teacher = None
    if config.method in ("clonal", "kd"):
        if not args.baseline:
            raise UserError(f"--method {config.method} needs --baseline CHECKPOINT")
        teacher = load_checkpoint(args.baseline)
    if teacher is not None and teacher.meta.dataset and not data_args_given(sys.argv[1:] if argv is None else argv):
        spec = DatasetSpec.from_dict(teacher.meta.dataset)  # default: the baseline's own data
    else:
        spec = spec_from_args(args)
    out = Path(args.out)
    result = train(config, spec, teacher=teacher, progress=not args.quiet, name=out.name.removesuffix(".safetensors"))
    path = save_checkpoint(result.model, result.meta, out)
    print(format_metrics(dataclasses.replace(result.meta, name=path.stem)))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
