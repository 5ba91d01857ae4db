r"""Train every method on every seed and tabulate test figures, paired by seed with the baseline.

    asl-lens experiment --dataset mnist-lt --arch mnist_cnn \
        --methods baseline,asloss,asloss-paper,clonal,clonal-paper,kd --seeds 15 --search --out docs/results/mnist-lt

Rows are methods (tuned on validation) or a method at the paper's own settings
(``asloss-paper``, ``clonal-paper``). Seeds 0..N-1 are training seeds (weights, batch order,
augmentation); the data split is the preset's (``--data-seed``). Teacher rows learn from the
baseline trained on the same seed (with ``--teacher-mode oof``, from K out-of-fold baselines
trained on that seed). Each model's epoch is chosen on the validation split (inside
``train``); the test split is read once per model, here, for the table. ``--workers`` runs
seeds in parallel processes; results do not depend on it.

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
from asl_core.experiment import memo
from asl_core.experiment.memo import memo_key
from asl_core.experiment.tables import REFERENCE, RunResult, markdown, runs_csv, search_markdown, summarize, summary_csv
from asl_core.experiment.parallel import SERIAL, Workers, worker_splits
from asl_core.experiment.search import EXTENSION_ROUNDS, SEARCH_GRIDS, SearchRecord, count_runs, search
from asl_core.data.samplers import SAMPLERS
from asl_core.engine.features import extract_features
from asl_core.engine.options import InferenceOptions
from asl_core.engine.metrics import classification_metrics, within_between_ratio
from asl_core.models import ARCHITECTURES, paper_layers
from asl_core.objectives import get_objective, method_names
from asl_core.training import TrainConfig, TrainResult, train
from asl_core.training.cli import add_dataset_args, spec_from_args
from asl_core.training.config import TEACHER_MODES
from asl_core.settings import get_settings
from asl_core.training.teachers import FoldTeachers
from asl_core.training.teaching import prepare_teacher, train_fold_baselines

TAIL_CLASSES = 3
DEFAULT_SEARCH_SEEDS = (100, 101, 102)
TrainFn = Callable[..., TrainResult]


def _asloss_paper(arch: str) -> dict[str, Any]:
    """The ASLoss paper's plain form (it publishes no tuned weights): smooth-L1, r = 10, every
    lambda and layer weight 1, on the pre-activation embedding and one earlier layer."""
    return {"layers": {layer: 1.0 for layer in paper_layers(arch)}, "distance": "smooth_l1", "radius": 10.0,
            "lambda_agg": 1.0, "lambda_sep": 1.0, "lambda_scope": 1.0}


# rows at a method's published settings: name -> (method, settings for an architecture)
FIXED_ROWS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "asloss-paper": ("asloss", _asloss_paper),
    "clonal-paper": ("clonal", lambda arch: {"fp_alpha": 1.0, "fp_beta": 1.0}),  # the authors' hard-coded values
}


def row_method(row: str) -> str:
    return FIXED_ROWS[row][0] if row in FIXED_ROWS else row


def parse_methods(text: str) -> tuple[str, ...]:
    """``"baseline,clonal,clonal-paper"`` -> rows in training order (the baseline first: others need it)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    known = (*method_names(), *FIXED_ROWS)
    unknown = [m for m in names if m not in known]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UserError("a method is listed twice in --methods")
    if REFERENCE not in names:
        raise UserError("--methods must include baseline: every method is compared with it, and clonal/kd learn from it")
    return (REFERENCE, *(m for m in names if m != REFERENCE))


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"bad seed list {text!r}; use integers separated by commas") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError("the seed list must be non-empty and without repeats")
    return seeds


def test_figures(result: TrainResult, split: Split, tail: Sequence[int], seed: int, row: str | None = None) -> RunResult:
    """Classification figures on ``split``, and the silhouette and within/between distance ratio of
    the ASLoss layer (the pre-activation embedding where the architecture has one; the same layer
    for every row, so the rows compare)."""
    meta = result.meta
    layer = paper_layers(meta.arch)[0]
    # one batch over the whole split: the figures do not depend on an extraction batch size
    feats = extract_features(LoadedCheckpoint(model=result.model, meta=meta), split, [layer],
                             InferenceOptions(device="cpu", batch_size=max(1, len(split))))
    features = feats.layers[layer].astype(np.float64)
    y = feats.labels
    cls = classification_metrics(y, feats.preds, meta.num_classes)
    recall = cls["per_class_recall"]
    diag = meta.diagnostics or {}
    return RunResult(
        method=row or meta.method, seed=seed, accuracy=cls["accuracy"], macro_f1=cls["macro_f1"],
        tail_recall=float(np.mean([recall[c] for c in tail])),
        silhouette=float(silhouette_score(features, y)) if len(set(y.tolist())) > 1 else float("nan"),
        per_class_recall=tuple(recall), val_macro_f1=float(meta.metrics["val"]["macro_f1"]), best_epoch=int(meta.best_epoch or 0),
        within_between=float(within_between_ratio(features, y)),
        confusing_set_mean=float(diag.get("confusing_set_mean", float("nan"))),
        singleton_fraction=float(diag.get("confusing_set_singleton_fraction", float("nan"))),
        correct=tuple(bool(v) for v in feats.correct),
        terms=last_epoch_terms(meta.history),
    )


def last_epoch_terms(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The objective's loss terms over the last training epoch (``train_<term>``, and per ASLoss
    layer ``<layer>.<term>``): which terms fire, and how strongly."""
    if not history:
        return {}
    row = history[-1]
    out = {k.removeprefix("train_"): float(v) for k, v in row.items()
           if k.startswith("train_") and k not in ("train_accuracy",) and isinstance(v, (int, float))}
    for layer, vals in (row.get("layers") or {}).items():
        out.update({f"{layer}.{k}": float(v) for k, v in vals.items()})
    return out


def method_configs(methods: Sequence[str], base: TrainConfig, student_arch: str | None,
                   chosen: dict[str, dict[str, Any]] | None = None) -> dict[str, TrainConfig]:
    """Row -> its training config: a tuned method takes the search's choice (or the registry's
    defaults), an ablation its parent's choice with one term removed, a fixed row its published
    settings."""
    chosen = chosen or {}
    configs = {}
    for row in methods:
        method = row_method(row)
        cls = get_objective(method)
        arch = student_arch if (student_arch and cls.needs_teacher) else base.arch
        if row in FIXED_ROWS:
            settings = FIXED_ROWS[row][1](arch)
        elif cls.ablation_of and cls.ablation_of in chosen:
            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            settings = {k: v for k, v in chosen[cls.ablation_of].items()
                        if k not in cls.fixed and (k in cls.params or k in fields)}
        else:
            settings = dict(chosen.get(row, {}))
        configs[row] = dataclasses.replace(base.with_params(method, **settings), arch=arch)
    return configs


def fold_teachers(teacher_config: TrainConfig, splits: Splits, seed: int) -> FoldTeachers | None:
    """Out-of-fold stand-ins of one seed's teacher, trained with the teacher's own recipe, when the
    teacher mode asks for them (cached under the disk cache's ``training/``, keyed by the recipe)."""
    if teacher_config.teacher_mode != "oof":
        return None
    return train_fold_baselines(teacher_config, splits, teacher_config.teacher_folds, seed,
                                get_settings().cache_dir / "training")


def run_seed(configs: dict[str, TrainConfig], seed: int, spec: DatasetSpec, splits: Splits,
             train_fn: TrainFn = train, on_run: Callable[[], None] | None = None) -> list[RunResult]:
    """Every row on one seed. A row that needs a teacher learns from the row of its
    ``teacher_method`` on the same seed (the baseline, or the logit-adjusted row for clonal+la),
    which is trained first."""
    tail = splits.smallest_classes(TAIL_CLASSES)
    order = list(configs)
    teacher_rows = {}
    for row, config in configs.items():
        cls = get_objective(config.method)
        if cls.needs_teacher:
            source = next((r for r in order if configs[r].method == cls.teacher_method and r not in FIXED_ROWS), None)
            if source is None:
                raise UserError(f"row {row!r} learns from {cls.teacher_method!r}: add it to --methods")
            teacher_rows[row] = source
    sources = set(teacher_rows.values())
    ordered = [r for r in order if r in sources] + [r for r in order if r not in sources]
    runs, extra = {}, {}
    for row in ordered:
        config = configs[row]
        kwargs = {}
        if row in teacher_rows:
            src = teacher_rows[row]
            if "folds" not in extra[src]:
                extra[src]["folds"] = fold_teachers(dataclasses.replace(configs[src], seed=seed), splits, seed)
            kwargs = {"teacher": prepare_teacher(dataclasses.replace(config, seed=seed), extra[src]["teacher"], splits,
                                                 extra[src]["folds"])}
        result = train_fn(dataclasses.replace(config, seed=seed), spec, splits=splits, progress=False, **kwargs)
        if row in sources:
            extra[row] = {"teacher": LoadedCheckpoint(model=result.model, meta=result.meta)}
        runs[row] = test_figures(result, splits.test, tail, seed, row)
        if on_run:
            on_run()
    return [runs[r] for r in order]


def _seed_key(configs: dict[str, TrainConfig], seed: int, spec: DatasetSpec) -> str:
    return memo_key("seed", seed, spec.to_dict(), {r: [c.method, c.arch, c.hyperparams()] for r, c in configs.items()})


def _seed_job(job: tuple) -> list[RunResult]:
    configs, seed, spec = job
    key = _seed_key(configs, seed, spec)
    cached = memo.load(key)
    if cached is not None:
        return [RunResult.from_dict(r) for r in cached]
    runs = run_seed(configs, seed, spec, worker_splits(spec))
    memo.store(key, [r.to_dict() for r in runs])
    return runs


def run_seeds(configs: dict[str, TrainConfig], seeds: Sequence[int], spec: DatasetSpec, splits: Splits,
              train_fn: TrainFn = train, on_run: Callable[[], None] | None = None, workers: Workers = SERIAL,
              on_seeds: Callable[[list[RunResult]], None] | None = None) -> list[RunResult]:
    """Every row on every seed; ``workers`` may run seeds in parallel processes (each trains with a
    fixed thread count, so the results are those of a serial run). With the real training function
    each seed's rows are memoised on disk (:mod:`asl_core.experiment.memo`): a stopped experiment
    resumes. ``on_seeds`` sees the runs so far after every batch of ``workers`` seeds (partial tables)."""
    order = list(configs)
    runs: list[RunResult] = []
    step = max(1, workers.workers)
    for i in range(0, len(seeds), step):
        chunk = list(seeds[i:i + step])
        if train_fn is train:
            per_seed = workers.map(_seed_job, [(configs, seed, spec) for seed in chunk],
                                   on_done=(lambda: [on_run() for _ in configs]) if on_run else None)
            runs += [r for seed_runs in per_seed for r in seed_runs]
        else:
            runs += [r for seed in chunk for r in run_seed(configs, seed, spec, splits, train_fn, on_run)]
        runs.sort(key=lambda r: (order.index(r.method), r.seed))
        if on_seeds is not None:
            on_seeds(list(runs))
    return runs


def used_hyperparams(configs: dict[str, TrainConfig]) -> dict[str, dict[str, Any]]:
    out = {}
    for m, c in configs.items():
        hp = {k: v for k, v in c.hyperparams().items() if k != "seed"}
        out[m] = {"arch": c.arch, **hp, **({"layers": c.layer_weights()} if "layers" in get_objective(c.method).params else {})}
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
        "- Silhouette and within/between: sklearn `silhouette_score` (Euclidean) and the ratio of mean within-class to mean "
        "between-class distance, on the full-dimensional features of the ASLoss layer (the paper's pre-activation "
        "embedding) of the test split, for every row.",
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
    used = {m: c.hyperparams() for m, c in configs.items()}
    mismatch = [f"{m}.{k}: default {used[m].get(k)!r} vs chosen {v!r}"
                for m, chosen in record.chosen().items() if m in configs for k, v in chosen.items() if used[m].get(k) != v]
    note = (f"Not re-run (`--no-search`). The values used are TrainConfig's defaults, set from the search recorded in "
            f"`{path.name}` (made with `{data.get('command', '--search')}`).")
    if mismatch:
        note += " **The defaults differ from that record:** " + "; ".join(mismatch) + "."
    return record, note


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="baseline,asloss,clonal,kd", help=f"comma list from {', '.join(method_names())}; must include baseline")
    p.add_argument("--seeds", type=int, default=5, help="train on seeds 0..N-1 (0: the search alone)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write OUT.md from the search recorded in OUT_search.json (a search whose test "
                        "seeds have not run, or have not run yet)")
    p.add_argument("--out", required=True, help="output stem: writes OUT.md, OUT.csv, OUT_runs.csv (and OUT_search.json)")
    p.add_argument("--arch", default=TrainConfig.arch, help=f"one of {', '.join(ARCHITECTURES)}")
    p.add_argument("--student-arch", help="architecture of the clonal/KD network (default: --arch), e.g. digits_cnn_small")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--search", action=argparse.BooleanOptionalAction, default=False,
                   help="re-run the validation-split grid search and use its choices (default: use TrainConfig's defaults "
                        "and include the recorded search from OUT_search.json)")
    p.add_argument("--search-seeds", default=",".join(map(str, DEFAULT_SEARCH_SEEDS)),
                   help="training seeds of the search, kept apart from the evaluation seeds")
    p.add_argument("--compare-to", default="",
                   help="rows to pair every other row against as well (comma list), e.g. logit-adjusted,conf-penalty")
    p.add_argument("--extension-rounds", type=int, default=EXTENSION_ROUNDS,
                   help="how often a search winner at the edge of a numeric axis extends that axis (the cap the table names)")
    p.add_argument("--device", default="cpu", help="cpu (default, reproducible), cuda, auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads; results are bit-identical only at the same count")
    p.add_argument("--workers", type=int, default=1, help="seeds trained in parallel processes (results do not depend on it)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=TrainConfig.augment,
                   help="per-batch augmentation for every row")
    p.add_argument("--sampler", choices=SAMPLERS, default=TrainConfig.sampler)
    p.add_argument("--teacher-mode", choices=TEACHER_MODES, default=TrainConfig.teacher_mode)
    p.add_argument("--teacher-folds", type=int, default=TrainConfig.teacher_folds)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataset_args(p)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    methods = parse_methods(args.methods)
    if args.seeds < 0 or args.threads < 1:
        raise UserError("--seeds must be >= 0 and --threads >= 1")
    if args.seeds == 0 and not (args.search or args.report_only):
        raise UserError("--seeds 0 runs the search alone: add --search")
    if args.student_arch and args.student_arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {args.student_arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    seeds = tuple(range(args.seeds))
    search_seeds = parse_seeds(args.search_seeds)
    if args.search and set(search_seeds) & set(seeds):
        raise UserError("--search-seeds must not overlap the evaluation seeds 0..N-1")
    torch.set_num_threads(args.threads)
    spec = spec_from_args(args)
    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    base = TrainConfig(arch=args.arch, epochs=args.epochs, device=args.device, augment=args.augment, sampler=args.sampler,
                       teacher_mode=args.teacher_mode, teacher_folds=args.teacher_folds)
    splits = build_splits(spec)
    paths = output_paths(Path(args.out))
    command = "asl-lens experiment " + shlex.join(argv)

    def write_search_report(record: SearchRecord, partial_rows: bool) -> Path:
        """OUT.md for a search without test seeds: the equal-budget validation scores, labelled."""
        done = [m.method for m in record.methods]
        missing_rows = [m for m in methods if m in SEARCH_GRIDS and m not in done]
        missing = (f"**PARTIAL: no test seeds.** This file holds the validation search only; the paired test runs over "
                   f"seeds 0-{len(seeds) - 1 if seeds else 14} have not run. ")
        if missing_rows or partial_rows:
            missing += f"The search itself is unfinished: no result yet for {', '.join(missing_rows) or 'the last row'}. "
        missing += "Re-running the command resumes from the runs already made (`.cache/experiment/`)."
        text = search_markdown(title=f"PARTIAL (validation search only): {spec.name}: {' vs '.join(methods)}",
                               command=command, setup=setup_lines(spec, splits, (), args.threads, args.device)[:3],
                               search=record, search_note="Run with `--search`.", missing=missing)
        atomic_write_bytes(paths["md"], text.encode())
        return paths["md"]

    if args.report_only:
        try:
            data = json.loads(paths["search"].read_text())
            record = SearchRecord.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot read the search record {paths['search']}: {exc}") from None
        command = data.get("command", command)
        print(f"wrote {write_search_report(record, bool(data.get('partial')))}")
        return 0

    from tqdm.auto import tqdm

    started = time.perf_counter()
    total = len(methods) * len(seeds) + (count_runs(methods, search_seeds) if args.search else 0)
    done = [0]  # models trained so far (tqdm stops counting when disabled by --quiet)

    def tick() -> None:
        done[0] += 1
        bar.update()

    def write(runs: list[RunResult], record: SearchRecord | None, note: str, configs: dict[str, TrainConfig],
              partial: bool) -> list[Path]:
        done_seeds = sorted({r.seed for r in runs})
        summaries = summarize(runs, methods)
        title = f"{spec.name}: {' vs '.join(methods)}"
        if partial:
            title = (f"PARTIAL ({len(done_seeds)} of {len(seeds)} seeds: {', '.join(map(str, done_seeds))}): " + title)
        text = markdown(title=title, command=command,
                        setup=setup_lines(spec, splits, done_seeds, args.threads, args.device), summaries=summaries, runs=runs,
                        used=used_hyperparams(configs), search=record, search_note=note,
                        compare_to=[r.strip() for r in args.compare_to.split(",") if r.strip()])
        outputs = {paths["md"]: text, paths["csv"]: summary_csv(summaries), paths["runs"]: runs_csv(runs, splits.class_names)}
        if args.search and record is not None:
            outputs[paths["search"]] = json.dumps({"command": command, "dataset": spec.to_dict(), **record.to_dict()}, indent=2) + "\n"
        for path, content in outputs.items():
            try:
                atomic_write_bytes(path, content.encode())
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        return list(outputs)

    with tqdm(total=total, desc="experiment", unit="model", disable=args.quiet, file=sys.stderr, dynamic_ncols=True) as bar, \
            Workers(args.workers, args.threads) as pool:
        record = None
        if args.search:
            bar.set_description("search (validation)")
            tuned_rows = [m for m in methods if m not in FIXED_ROWS]

            def search_so_far(rec: SearchRecord) -> None:
                """The search record as each row finishes (marked partial until the last one)."""
                done_rows = [m.method for m in rec.methods]
                data = {"command": command, "dataset": spec.to_dict(), **rec.to_dict()}
                data["partial"] = len(done_rows) < len([m for m in tuned_rows if m in SEARCH_GRIDS])
                atomic_write_bytes(paths["search"], (json.dumps(data, indent=2) + "\n").encode())

            record = search(tuple(tuned_rows), base, spec, splits, search_seeds,
                            student_arch=args.student_arch, on_run=tick, workers=pool,
                            extension_rounds=args.extension_rounds, on_method=search_so_far)
            note = f"Run here (`--search`) on seeds {', '.join(map(str, search_seeds))}; the values used above are the chosen ones."
            configs = method_configs(methods, base, args.student_arch, record.chosen())
            bar.total = done[0] + len(methods) * len(seeds)  # a grid extended at its edge adds runs
            bar.refresh()
        else:
            configs = method_configs(methods, base, args.student_arch)
            record, note = recorded_search(paths["search"], configs)
        if not seeds:
            assert record is not None
            print(f"wrote {write_search_report(record, False)}")
            atomic_write_bytes(paths["search"], (json.dumps({"command": command, "dataset": spec.to_dict(),
                                                              **record.to_dict()}, indent=2) + "\n").encode())
            print(f"wrote {paths['search']}")
            return 0
        bar.set_description("seeds (test)")

        def partial(runs_so_far: list[RunResult]) -> None:
            if len({r.seed for r in runs_so_far}) < len(seeds):
                write(runs_so_far, record, note, configs, partial=True)

        runs = run_seeds(configs, seeds, spec, splits, on_run=tick, workers=pool, on_seeds=partial)
        trained = done[0]
    elapsed = time.perf_counter() - started
    written = write(runs, record, note, configs, partial=False)
    print(f"{trained} models in {elapsed:.1f} s (out-of-fold teachers not counted; runs found in the resume cache count too)")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
