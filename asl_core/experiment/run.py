r"""Train every method on every seed and tabulate test figures, paired by seed with the baseline.

    asl-lens experiment --dataset digits-hard --methods baseline,asloss,clonal,kd \
        --seeds 5 --out docs/results/digits-hard

Seeds 0..N-1 are training seeds (weights, batch order); the data split is the preset's
(``--data-seed``). ClonalNet and KD learn from the baseline trained on the same seed. Each
model's epoch is chosen on the validation split (inside ``train``); the test split is read
once per model, here, for the table.

Hyperparameters: by default the TrainConfig defaults are used, which were set from the
committed validation-split search, so re-running the command reproduces the table.
``--search`` re-runs that search (see ``experiment_search``) on separate seeds and uses
what it chooses. Writes OUT.md, OUT.csv (per-method summary), OUT_runs.csv (per seed) and,
with ``--search``, OUT_search.json. Results are bit-identical between runs on the same CPU
with the same ``--threads``; another thread count changes the floating-point sums.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import silhouette_score

from asl_core.checkpoint import LoadedCheckpoint, atomic_write_bytes
from asl_core.data import DatasetSpec, Split, Splits, build_splits
from asl_core.errors import UserError, cli_entry
from asl_core.experiment.tables import REFERENCE, RunResult, markdown, runs_csv, summarize, summary_csv
from asl_core.experiment.search import SearchRecord, count_runs, search
from asl_core.engine.metrics import classification_metrics
from asl_core.engine.features import extract_features
from asl_core.models import ARCHITECTURES, embedding_layer
from asl_core.objectives import get_objective, method_names
from asl_core.training import TrainConfig, TrainResult, train
from asl_core.training.cli import add_dataset_args, spec_from_args

TAIL_CLASSES = 3
DEFAULT_SEARCH_SEEDS = (100, 101, 102)
TrainFn = Callable[..., TrainResult]


def parse_methods(text: str) -> tuple[str, ...]:
    """``"baseline,clonal"`` -> methods in training order (the baseline first: others need it)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in method_names()]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; choose from {', '.join(method_names())}")
    if len(set(names)) != len(names):
        raise UserError("a method is listed twice in --methods")
    if REFERENCE not in names:
        raise UserError("--methods must include baseline: every method is compared with it, and clonal/kd learn from it")
    return tuple(m for m in method_names() if m in names)


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"bad seed list {text!r}; use integers separated by commas") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError("the seed list must be non-empty and without repeats")
    return seeds


def test_figures(result: TrainResult, split: Split, tail: Sequence[int], seed: int) -> RunResult:
    """Classification figures and the silhouette of the penultimate layer on ``split``."""
    meta = result.meta
    layer = embedding_layer(meta.arch)
    # one batch over the whole split: the figures do not depend on an extraction batch size
    feats = extract_features(LoadedCheckpoint(model=result.model, meta=meta), split, [layer], device="cpu",
                             batch_size=max(1, len(split)))
    features = feats.layers[layer].astype(np.float64)
    y = feats.labels
    cls = classification_metrics(y, feats.preds, meta.num_classes)
    recall = cls["per_class_recall"]
    return RunResult(
        method=meta.method, seed=seed, accuracy=cls["accuracy"], macro_f1=cls["macro_f1"],
        tail_recall=float(np.mean([recall[c] for c in tail])),
        silhouette=float(silhouette_score(features, y)) if len(set(y.tolist())) > 1 else float("nan"),
        per_class_recall=tuple(recall), val_macro_f1=float(meta.metrics["val"]["macro_f1"]), best_epoch=int(meta.best_epoch or 0),
    )


def method_configs(methods: Sequence[str], base: TrainConfig, student_arch: str | None,
                   chosen: dict[str, dict[str, Any]] | None = None) -> dict[str, TrainConfig]:
    configs = {}
    for m in methods:
        arch = student_arch if (student_arch and get_objective(m).needs_teacher) else base.arch
        configs[m] = dataclasses.replace(base, method=m, arch=arch, **(chosen or {}).get(m, {}))
    return configs


def run_seeds(configs: dict[str, TrainConfig], seeds: Sequence[int], spec: DatasetSpec, splits: Splits,
              train_fn: TrainFn = train, on_run: Callable[[], None] | None = None) -> list[RunResult]:
    """Train each method (baseline first) on each seed; test figures per model."""
    tail = splits.smallest_classes(TAIL_CLASSES)
    runs = []
    for seed in seeds:
        teacher = None
        for method, config in configs.items():
            result = train_fn(dataclasses.replace(config, seed=seed), spec, splits=splits, progress=False,
                              teacher=teacher if get_objective(method).needs_teacher else None)
            if method == REFERENCE:
                teacher = LoadedCheckpoint(model=result.model, meta=result.meta)
            runs.append(test_figures(result, splits.test, tail, seed))
            if on_run:
                on_run()
    order = list(configs)
    return sorted(runs, key=lambda r: (order.index(r.method), r.seed))


def used_hyperparams(configs: dict[str, TrainConfig]) -> dict[str, dict[str, Any]]:
    out = {}
    for m, c in configs.items():
        hp = {k: v for k, v in c.hyperparams().items() if k != "seed"}
        out[m] = {"arch": c.arch, **hp, **({"layers": c.layer_weights()} if m == "asloss" else {})}
    return out


def setup_lines(spec: DatasetSpec, splits: Splits, seeds: Sequence[int], threads: int, device: str) -> list[str]:
    counts = splits.train.class_counts(splits.num_classes)
    tail = splits.smallest_classes(TAIL_CLASSES)
    names = splits.class_names
    return [
        f"- Data: `{spec.name}` (source {spec.source}, data seed {spec.seed}): imbalance {spec.imbalance}, noise {spec.noise}, "
        f"blur {spec.blur}, occlusion {spec.occlusion}.",
        f"- Training samples per class: {', '.join(f'{n}={c}' for n, c in zip(names, counts))} ({len(splits.train)} in all); "
        f"validation {len(splits.val)}, test {len(splits.test)} (balanced).",
        f"- Smallest {len(tail)} classes by training count: {', '.join(f'{names[c]} ({counts[c]})' for c in tail)}.",
        f"- Training seeds: {', '.join(map(str, seeds))}. Epoch chosen on validation macro-F1; test read once per model.",
        "- Silhouette: sklearn `silhouette_score` (Euclidean) of the penultimate layer on the normalised test split.",
        f"- Std is the sample std (ddof = 1) over seeds. Device {device}, torch {torch.__version__}, {threads} CPU thread(s).",
    ]


def output_paths(out: Path) -> dict[str, Path]:
    stem = out.name.removesuffix(".md")
    folder = out.parent
    return {"md": folder / f"{stem}.md", "csv": folder / f"{stem}.csv", "runs": folder / f"{stem}_runs.csv",
            "search": folder / f"{stem}_search.json"}


def recorded_search(path: Path, configs: dict[str, TrainConfig]) -> tuple[SearchRecord | None, str]:
    """The committed search record, and a note that says whether the defaults match it."""
    if not path.exists():
        return None, "No search was run (`--no-search`) and none is recorded: the values used are TrainConfig's defaults."
    try:
        data = json.loads(path.read_text())
        record = SearchRecord.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the search record {path}: {exc}") from None
    mismatch = [f"{m}.{k}: default {getattr(configs[m], k)!r} vs chosen {v!r}"
                for m, chosen in record.chosen().items() if m in configs for k, v in chosen.items() if getattr(configs[m], k) != v]
    note = (f"Not re-run (`--no-search`). The values used are TrainConfig's defaults, set from the search recorded in "
            f"`{path.name}` (made with `{data.get('command', '--search')}`).")
    if mismatch:
        note += " **The defaults differ from that record:** " + "; ".join(mismatch) + "."
    return record, note


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="baseline,asloss,clonal,kd", help=f"comma list from {', '.join(method_names())}; must include baseline")
    p.add_argument("--seeds", type=int, default=5, help="train on seeds 0..N-1")
    p.add_argument("--out", required=True, help="output stem: writes OUT.md, OUT.csv, OUT_runs.csv (and OUT_search.json)")
    p.add_argument("--arch", default=TrainConfig.arch, help=f"one of {', '.join(ARCHITECTURES)}")
    p.add_argument("--student-arch", help="architecture of the clonal/KD network (default: --arch), e.g. digits_cnn_small")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--search", action=argparse.BooleanOptionalAction, default=False,
                   help="re-run the validation-split grid search and use its choices (default: use TrainConfig's defaults "
                        "and include the recorded search from OUT_search.json)")
    p.add_argument("--search-seeds", default=",".join(map(str, DEFAULT_SEARCH_SEEDS)),
                   help="training seeds of the search, kept apart from the evaluation seeds")
    p.add_argument("--device", default="cpu", help="cpu (default, reproducible), cuda, auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads; results are bit-identical only at the same count")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataset_args(p)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    methods = parse_methods(args.methods)
    if args.seeds < 1 or args.threads < 1:
        raise UserError("--seeds and --threads must be >= 1")
    if args.student_arch and args.student_arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {args.student_arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    seeds = tuple(range(args.seeds))
    search_seeds = parse_seeds(args.search_seeds)
    if args.search and set(search_seeds) & set(seeds):
        raise UserError("--search-seeds must not overlap the evaluation seeds 0..N-1")
    torch.set_num_threads(args.threads)
    spec = spec_from_args(args)
    base = TrainConfig(arch=args.arch, epochs=args.epochs, device=args.device)
    splits = build_splits(spec)
    paths = output_paths(Path(args.out))
    command = "asl-lens experiment " + shlex.join(argv)

    from tqdm.auto import tqdm

    started = time.perf_counter()
    total = len(methods) * len(seeds) + (count_runs(methods, search_seeds) if args.search else 0)
    with tqdm(total=total, desc="experiment", unit="model", disable=args.quiet, file=sys.stderr, dynamic_ncols=True) as bar:
        record = None
        if args.search:
            bar.set_description("search (validation)")
            record = search(methods, base, spec, splits, search_seeds, student_arch=args.student_arch, on_run=lambda: bar.update())
            note = f"Run here (`--search`) on seeds {', '.join(map(str, search_seeds))}; the values used above are the chosen ones."
            configs = method_configs(methods, base, args.student_arch, record.chosen())
        else:
            configs = method_configs(methods, base, args.student_arch)
            record, note = recorded_search(paths["search"], configs)
        bar.set_description("seeds (test)")
        runs = run_seeds(configs, seeds, spec, splits, on_run=lambda: bar.update())
    elapsed = time.perf_counter() - started

    summaries = summarize(runs, methods)
    text = markdown(title=f"{spec.name}: {' vs '.join(methods)}", command=command,
                    setup=setup_lines(spec, splits, seeds, args.threads, args.device), summaries=summaries, runs=runs,
                    used=used_hyperparams(configs), search=record, search_note=note)
    outputs = {paths["md"]: text, paths["csv"]: summary_csv(summaries), paths["runs"]: runs_csv(runs, splits.class_names)}
    if args.search and record is not None:
        outputs[paths["search"]] = json.dumps({"command": command, "dataset": spec.to_dict(), **record.to_dict()}, indent=2) + "\n"
    for path, content in outputs.items():
        try:
            atomic_write_bytes(path, content.encode())
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    written = list(outputs)
    print(f"{total} models in {elapsed:.1f} s")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
