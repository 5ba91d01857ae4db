r"""``asl-lens train``: train one model and save it as a checkpoint.

    asl-lens train --method asloss --dataset digits-hard --layers embedding:1.0 \
        --epochs 40 --seed 0 --out checkpoints/asloss
    torchrun --nproc_per_node=4 -m asl_core train ...   # DistributedDataParallel, --batch-size is global

Methods come from the objective registry (:mod:`asl_core.objectives`): baseline (CE), asloss
(CE + ASLoss on chosen layers), clonal (focusing-picking loss against a frozen baseline) and kd
(CE + Hinton distillation). The best epoch is chosen on validation macro-F1; test is read once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from asl_core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from asl_core.data import PRESETS, DatasetSpec, build_splits, get_spec
from asl_core.errors import UserError, cli_entry
from asl_core.losses import DISTANCES
from asl_core.models import ARCHITECTURES
from asl_core.objectives import get_objective, method_names
from asl_core.runtime import limit_threads
from asl_core.data.samplers import SAMPLERS
from asl_core import distributed
from asl_core.training.config import TEACHER_MODES, TrainConfig
from asl_core.training.loop import train
from asl_core.training.teaching import prepare_teacher


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
    # every data flag defaults to None, so that "given" is read off the parsed namespace (argparse
    # also accepts abbreviations such as --imbal, which a scan of argv misses)
    g.add_argument("--dataset", default=None,
                   help=f"(default {DEFAULT_DATASET}) preset (digits, digits-hard, mnist-lt) or a source: folder, mnist, fashion-mnist, cifar10 (with --data-root)")
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
    g.add_argument("--data-seed", type=int, default=None, help="seed of the splits and the corruption (default 0)")


DEFAULT_DATASET = "digits-hard"
DATA_DESTS = ("dataset", "data_root", "samples_per_class", "imbalance", "noise", "blur", "occlusion", "val_per_class",
              "test_per_class", "image_size", "channels", "data_seed")


def data_args_given(args: argparse.Namespace) -> list[str]:
    """The data flags the command line gave (``--noise 0.1``, ``--noise=0.1``, ``--noi 0.1``), from
    the parsed namespace. Without any, clonal/KD train on the baseline's own dataset spec."""
    return ["--" + d.replace("_", "-") for d in DATA_DESTS if getattr(args, d, None) is not None]


def spec_conflict(args: argparse.Namespace, spec: DatasetSpec, baseline: DatasetSpec) -> str | None:
    """One line when the flags' dataset differs from the baseline's (training follows the flags)."""
    if spec.key() == baseline.key():
        return None
    a, b = spec.to_dict(), baseline.to_dict()
    diff = ", ".join(f"{k} {a[k]!r} (baseline {b[k]!r})" for k in a if a[k] != b[k])
    return f"note: {' '.join(data_args_given(args))} give other data than the baseline's: {diff}; training on the flags' data"


def spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    overrides = dict(
        samples_per_class=args.samples_per_class, imbalance=args.imbalance, noise=args.noise, blur=args.blur,
        occlusion=args.occlusion, val_per_class=args.val_per_class, test_per_class=args.test_per_class,
        image_size=args.image_size, channels=args.channels, seed=args.data_seed,
    )
    dataset = args.dataset or DEFAULT_DATASET
    if dataset in PRESETS:
        return get_spec(dataset, **overrides)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return DatasetSpec(source=dataset, root=args.data_root, name=Path(args.data_root or dataset).name, **overrides)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=method_names(), default="baseline")
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
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $ASL_LENS_THREADS, else half the cores; see asl_core.runtime)")
    add_dataset_args(p)
    g = p.add_argument_group("batches (every method)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=TrainConfig.augment,
                   help="random rotation/shift/zoom per batch (flips only where the dataset allows them)")
    g.add_argument("--aug-rotation", type=float, default=TrainConfig.aug_rotation, help="max degrees either way")
    g.add_argument("--aug-shift", type=float, default=TrainConfig.aug_shift, help="max shift, fraction of the side")
    g.add_argument("--aug-scale", type=float, default=TrainConfig.aug_scale, help="max zoom either way, fraction")
    g.add_argument("--sampler", choices=SAMPLERS, default=TrainConfig.sampler,
                   help="random batches, or class-balanced ones (same-class pairs for tail classes)")
    g = p.add_argument_group("ASLoss (--method asloss and its variants)")
    g.add_argument("--layers", help="NAME:WEIGHT,... (default: the embedding layer with --as-weight)")
    g = p.add_argument_group("ClonalNet and KD (--method clonal / kd and their variants)")
    g.add_argument("--baseline", "--teacher", dest="baseline",
                   help="the frozen teacher checkpoint (the baseline; for clonal+la the logit-adjusted model)")
    g.add_argument("--teacher-mode", choices=TEACHER_MODES, default=TrainConfig.teacher_mode,
                   help="live: the baseline on every augmented batch; oof: out-of-fold baselines (trained and cached); "
                        "fixed: clean training images once (memorised: shows the failure)")
    g.add_argument("--teacher-folds", type=int, default=TrainConfig.teacher_folds, help="K for --teacher-mode oof")
    add_method_args(p)
    return p


def method_hyperparams() -> dict[str, dict[str, Any]]:
    """Every method hyperparameter of the registry (``layers`` aside) -> {method: default}."""
    out: dict[str, dict[str, Any]] = {}
    for method in method_names():
        for name, default in get_objective(method).params.items():
            if name != "layers":
                out.setdefault(name, {})[method] = default
    return out


def add_method_args(p: argparse.ArgumentParser) -> None:
    """One flag per method hyperparameter, generated from the registry (``--fp-beta``, ``--la-tau``,
    ...). Its default is None: the chosen method's own default (``Objective.params``) applies, and
    the help says what it is, so no default is written twice."""
    g = p.add_argument_group("method hyperparameters (defaults: each method's own, from asl_core.objectives)")
    for name, defaults in method_hyperparams().items():
        sample = next(iter(defaults.values()))
        values = sorted({repr(v) for v in defaults.values()})
        if len(values) == 1:
            said = f"default {values[0]} ({', '.join(defaults)})"
        else:
            said = "defaults: " + ", ".join(f"{m} {v!r}" for m, v in defaults.items())
        kwargs: dict[str, Any] = {"default": None, "help": said}
        if name == "distance":
            kwargs["choices"] = tuple(DISTANCES)
        elif isinstance(sample, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(sample, (int, float)):
            kwargs["type"] = float
        g.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config of ``args``: a method hyperparameter flag that was given reaches the method (by
    TrainConfig's field of that name, or ``method_params``); one the method does not have is ignored."""
    base = TrainConfig(
        method=args.method, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, layers=parse_layers(args.layers),
        small_input={"auto": None, "yes": True, "no": False}[args.small_input], device=args.device,
        augment=args.augment, aug_rotation=args.aug_rotation, aug_shift=args.aug_shift, aug_scale=args.aug_scale,
        sampler=args.sampler, teacher_mode=args.teacher_mode, teacher_folds=args.teacher_folds,
    )
    given = {k: getattr(args, k) for k in method_hyperparams() if getattr(args, k, None) is not None}
    own = get_objective(args.method).params
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return base.with_params(args.method, **{k: v for k, v in given.items() if k in own or k in fields})


def format_metrics(meta: CheckpointMeta) -> str:
    v, t = meta.metrics["val"], meta.metrics["test"]
    return (f"{meta.name or meta.method:<12} val acc {v['accuracy']:.4f}  val macro-F1 {v['macro_f1']:.4f}  "
            f"test acc {t['accuracy']:.4f}  test macro-F1 {t['macro_f1']:.4f}  (best epoch {meta.best_epoch})")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with distributed.session(args.device) as (ctx, _):  # torchrun's process group; a no-op without torchrun
        return _run(args, argv, ctx)


def _run(args: argparse.Namespace, argv: list[str] | None, ctx: distributed.DistContext) -> int:
    limit_threads(args.threads or distributed.threads_per_process(ctx))
    config = config_from_args(args)
    teacher = None
    if get_objective(config.method).needs_teacher:
        if not args.baseline:
            raise UserError(f"--method {config.method} needs --baseline CHECKPOINT")
        teacher = load_checkpoint(args.baseline)
    if teacher is not None and teacher.meta.dataset and not data_args_given(args):
        spec = DatasetSpec.from_dict(teacher.meta.dataset)  # default: the baseline's own data
    else:
        spec = spec_from_args(args)
        if teacher is not None and teacher.meta.dataset and ctx.is_main:
            conflict = spec_conflict(args, spec, DatasetSpec.from_dict(teacher.meta.dataset))
            if conflict:
                print(conflict, file=sys.stderr)
    out = Path(args.out)
    splits = build_splits(spec)
    source = prepare_teacher(config, teacher, splits, progress=not args.quiet) if teacher is not None else None
    result = train(config, spec, teacher=source, splits=splits, progress=not args.quiet,
                   name=out.name.removesuffix(".safetensors"), dist_ctx=ctx)
    if not ctx.is_main:  # every rank holds the same weights; rank 0 alone writes (atomically) and reports
        distributed.barrier(ctx)
        return 0
    path = save_checkpoint(result.model, result.meta, out)
    print(format_metrics(dataclasses.replace(result.meta, name=path.stem)))
    diag = result.meta.diagnostics
    if "confusing_set_mean" in diag:
        print(f"confusing set: mean |S| {diag['confusing_set_mean']:.2f}, |S| = 1 for "
              f"{diag['confusing_set_singleton_fraction']:.1%} of samples; teacher train accuracy {diag.get('teacher_train_accuracy', float('nan')):.3f}")
    for note in diag.get("dataset_notes", []):
        print(f"data: {note}")
    for warning in result.meta.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"saved {path}" + (f" (trained by {ctx.world_size} processes, {ctx.backend})" if ctx.active else ""))
    distributed.barrier(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
