"""Hyperparameter search for the experiment: a small grid per method, scored on the
VALIDATION split only.

Each configuration is trained on every search seed (seeds kept apart from the evaluation
seeds) and scored by the mean validation macro-F1 of its best epoch; the highest mean wins,
ties going to the configuration listed first. The test split is never read here: a run's
``meta.metrics["test"]`` exists (``train`` evaluates it) but this module only looks at
``meta.metrics["val"]``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asl_core.checkpoint import LoadedCheckpoint
from asl_core.data import DatasetSpec, Splits
from asl_core.objectives import get_objective
from asl_core.experiment.parallel import SERIAL, Workers, worker_splits
from asl_core.training import TrainConfig, TrainResult, train
from asl_core.training.teachers import train_fold_baselines

# Grids, in the order ties are broken. The foundation's defaults are listed first where
# they are part of the grid, so a tie keeps them.
SEARCH_GRIDS: dict[str, dict[str, list[Any]]] = {
    # ASLoss on the architecture's embedding layer (pre-activation for mnist_cnn). The radius
    # matters: the paper's r = 10 fights CE, which wants embedding norms of ~16 on mnist-lt.
    "asloss": {
        "as_weight": [0.1, 1.0],
        "radius": [10.0, 20.0],
        "lambda_scope": [0.01, 0.1],
        "distance": ["smooth_l1"],
    },
    "clonal": {"fp_alpha": [1.0, 0.3], "fp_beta": [0.0, 1.0]},
    "kd": {"kd_temperature": [2.0, 4.0], "kd_weight": [0.5, 1.0]},
}
# a winner at the edge of a numeric axis extends that axis (one step beyond, at most this often)
EXTENSION_ROUNDS = 2
EXTENSION_FACTOR = 3.0
SELECTION_RULE = "highest mean validation macro-F1 over the search seeds; ties go to the configuration listed first"

TrainFn = Callable[..., TrainResult]


@dataclass(frozen=True)
class ConfigScore:
    """One grid point: its parameters, the validation macro-F1 per search seed, their mean."""

    params: dict[str, Any]
    val_macro_f1: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.val_macro_f1) / len(self.val_macro_f1)


@dataclass(frozen=True)
class MethodSearch:
    method: str
    grid: dict[str, list[Any]]
    scores: tuple[ConfigScore, ...]
    chosen: dict[str, Any]
    extended: dict[str, list[Any]] = dataclasses.field(default_factory=dict)  # axis -> values added at an edge


@dataclass(frozen=True)
class SearchRecord:
    seeds: tuple[int, ...]
    rule: str
    methods: tuple[MethodSearch, ...]
    # the baseline's validation macro-F1 on each search seed: what a tuned method must beat
    baseline_val_macro_f1: tuple[float, ...] = ()

    def chosen(self) -> dict[str, dict[str, Any]]:
        return {m.method: dict(m.chosen) for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": "val",
            "score": "macro_f1",
            "rule": self.rule,
            "seeds": list(self.seeds),
            "baseline_val_macro_f1": list(self.baseline_val_macro_f1),
            "methods": {
                m.method: {
                    "grid": m.grid,
                    "chosen": m.chosen,
                    "extended": m.extended,
                    "configs": [{"params": s.params, "val_macro_f1": list(s.val_macro_f1), "mean_val_macro_f1": s.mean}
                                for s in m.scores],
                }
                for m in self.methods
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRecord:
        methods = tuple(
            MethodSearch(
                method=name,
                grid=entry["grid"],
                scores=tuple(ConfigScore(c["params"], tuple(c["val_macro_f1"])) for c in entry["configs"]),
                chosen=entry["chosen"],
                extended=entry.get("extended", {}),
            )
            for name, entry in data["methods"].items()
        )
        return cls(seeds=tuple(data["seeds"]), rule=data["rule"], methods=methods,
                   baseline_val_macro_f1=tuple(data.get("baseline_val_macro_f1", ())))


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def val_score(result: TrainResult) -> float:
    """The one number selection uses: validation macro-F1 of the selected epoch."""
    return float(result.meta.metrics["val"]["macro_f1"])


def select(scores: Sequence[ConfigScore]) -> ConfigScore:
    """The best mean; the earliest on ties (``max`` keeps the first maximum)."""
    if not scores:
        raise ValueError("nothing to select from")
    return max(scores, key=lambda s: s.mean)


def edge_extensions(grid: dict[str, list[Any]], chosen: dict[str, Any], tried: dict[str, list[Any]]) -> dict[str, Any]:
    """Axis -> the next value beyond a chosen value that sits at the edge of its numeric axis
    (x3 above the largest, /3 below the smallest positive one). Booleans and strings never extend."""
    out = {}
    for axis, values in tried.items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) < 2 or len(numeric) != len(values):
            continue
        v = chosen[axis]
        if v == max(numeric):
            out[axis] = float(f"{v * EXTENSION_FACTOR:.4g}")
        elif v == min(numeric) and v > 0:
            out[axis] = float(f"{v / EXTENSION_FACTOR:.4g}")
    return out


def _val_job(job: tuple) -> float:
    """One grid point on one seed, in a worker: the validation score only."""
    config, spec, extra = job
    return val_score(train(config, spec, splits=worker_splits(spec), progress=False, **extra))


def _reference_job(job: tuple) -> tuple[TrainResult, dict[str, Any]]:
    """The baseline of one search seed (and its out-of-fold stand-ins when the teacher mode asks)."""
    base, spec, seed, with_folds = job
    splits = worker_splits(spec)
    res = train(dataclasses.replace(base, method="baseline", seed=seed), spec, splits=splits, progress=False)
    extra: dict[str, Any] = {"teacher": LoadedCheckpoint(model=res.model, meta=res.meta)}
    if with_folds and base.teacher_mode == "oof":
        extra["folds"] = train_fold_baselines(dataclasses.replace(base, method="baseline"), splits, base.teacher_folds, seed)
    return res, extra


def search(
    methods: Sequence[str],
    base: TrainConfig,
    spec: DatasetSpec,
    splits: Splits,
    seeds: Sequence[int],
    grids: dict[str, dict[str, list[Any]]] | None = None,
    student_arch: str | None = None,
    train_fn: TrainFn | None = None,
    on_run: Callable[[], None] | None = None,
    extend: bool = True,
    workers: Workers = SERIAL,
) -> SearchRecord:
    """Grid-search every method in ``methods`` that has a grid (the baseline has none), on the
    validation split of ``seeds``. A winner at the edge of a numeric axis extends that axis
    (``edge_extensions``), at most ``EXTENSION_ROUNDS`` times, and the record says so.

    ``base`` carries the shared settings (architecture, epochs, device, teacher mode); methods
    that need a teacher learn from a baseline trained with ``base`` on the same search seed
    (and from its out-of-fold stand-ins with ``teacher_mode="oof"``). ``workers`` may train in
    parallel processes (same results); ``train_fn`` (tests) replaces training, serially."""
    grids = SEARCH_GRIDS if grids is None else grids
    if not seeds:
        raise ValueError("the search needs at least one seed")
    tuned = [m for m in methods if m in grids]
    wants_teacher = any(get_objective(m).needs_teacher for m in tuned)
    if train_fn is not None:  # serial, with the given training function (tests)
        def reference_job(job):
            b, sp, seed, _ = job
            res = train_fn(dataclasses.replace(b, method="baseline", seed=seed), sp, splits=splits, progress=False)
            return res, {"teacher": LoadedCheckpoint(model=res.model, meta=res.meta)}

        def val_job(job):
            config, sp, extra = job
            return val_score(train_fn(config, sp, splits=splits, progress=False, **extra))

        run_map = lambda fn, jobs: SERIAL.map(fn, jobs, on_done=on_run)  # noqa: E731
    else:
        reference_job, val_job = _reference_job, _val_job
        run_map = lambda fn, jobs: workers.map(fn, jobs, on_done=on_run)  # noqa: E731

    teachers: dict[int, dict[str, Any]] = {}
    reference = []
    if tuned:  # the teachers of clonal/kd, and the bar every method is read against
        for seed, (res, extra) in zip(seeds, run_map(reference_job, [(base, spec, s, wants_teacher) for s in seeds])):
            teachers[seed] = extra
            reference.append(val_score(res))

    out = []
    for method in tuned:
        needs_teacher = get_objective(method).needs_teacher
        arch = student_arch if (student_arch and needs_teacher) else base.arch

        def score_all(points: list[dict[str, Any]]) -> list[ConfigScore]:
            jobs = [(dataclasses.replace(base, method=method, seed=seed, arch=arch, **params), spec,
                     teachers.get(seed, {}) if needs_teacher else {}) for params in points for seed in seeds]
            values = run_map(val_job, jobs)
            n = len(seeds)
            return [ConfigScore(params=params, val_macro_f1=tuple(values[i * n:(i + 1) * n])) for i, params in enumerate(points)]

        scores = score_all(grid_points(grids[method]))
        tried = {k: list(v) for k, v in grids[method].items()}
        extended: dict[str, list[Any]] = {}
        for _ in range(EXTENSION_ROUNDS if extend else 0):
            chosen = select(scores).params
            beyond = edge_extensions(grids[method], chosen, tried)
            if not beyond:
                break
            points = []
            for axis, value in beyond.items():
                tried[axis].append(value)
                extended.setdefault(axis, []).append(value)
                points.append({**chosen, axis: value})
            scores += score_all(points)
        out.append(MethodSearch(method=method, grid=grids[method], scores=tuple(scores), chosen=select(scores).params,
                                extended=extended))
    return SearchRecord(seeds=tuple(seeds), rule=SELECTION_RULE, methods=tuple(out), baseline_val_macro_f1=tuple(reference))


def count_runs(methods: Sequence[str], seeds: Sequence[int], grids: dict[str, dict[str, list[Any]]] | None = None) -> int:
    """Runs of the grid itself (edge extensions add more as they happen)."""
    grids = SEARCH_GRIDS if grids is None else grids
    n = sum(len(grid_points(grids[m])) * len(seeds) for m in methods if m in grids)
    if any(m in grids for m in methods):
        n += len(seeds)
    return n
