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
from asl_core.training import TrainConfig, TrainResult, train

# Grids, in the order ties are broken. The foundation's defaults are listed first where
# they are part of the grid, so a tie keeps them.
SEARCH_GRIDS: dict[str, dict[str, list[Any]]] = {
    "asloss": {
        "as_weight": [0.1, 0.03, 0.3],
        "radius": [10.0, 5.0],
        "lambda_scope": [0.1, 0.01],
        "distance": ["smooth_l1", "cosine"],
    },
    "clonal": {"fp_alpha": [1.0, 0.5, 2.0], "fp_beta": [1.0, 0.5, 0.0]},
    "kd": {"kd_temperature": [4.0, 2.0, 8.0], "kd_weight": [1.0, 0.5, 2.0]},
}
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


def search(
    methods: Sequence[str],
    base: TrainConfig,
    spec: DatasetSpec,
    splits: Splits,
    seeds: Sequence[int],
    grids: dict[str, dict[str, list[Any]]] | None = None,
    student_arch: str | None = None,
    train_fn: TrainFn = train,
    on_run: Callable[[], None] | None = None,
) -> SearchRecord:
    """Grid-search every method in ``methods`` that has a grid (the baseline has none).

    ``base`` carries the shared settings (architecture, epochs, device); ``clonal`` and ``kd``
    learn from a baseline trained with ``base`` on the same search seed.
    """
    grids = SEARCH_GRIDS if grids is None else grids
    if not seeds:
        raise ValueError("the search needs at least one seed")
    teachers: dict[int, LoadedCheckpoint] = {}
    reference = []
    if any(m in grids for m in methods):
        for seed in seeds:  # the teachers of clonal/kd, and the bar every method is read against
            res = train_fn(dataclasses.replace(base, method="baseline", seed=seed), spec, splits=splits, progress=False)
            teachers[seed] = LoadedCheckpoint(model=res.model, meta=res.meta)
            reference.append(val_score(res))
            if on_run:
                on_run()
    out = []
    for method in methods:
        if method not in grids:
            continue
        scores = []
        for params in grid_points(grids[method]):
            per_seed = []
            for seed in seeds:
                arch = student_arch if (student_arch and get_objective(method).needs_teacher) else base.arch
                config = dataclasses.replace(base, method=method, seed=seed, arch=arch, **params)
                teacher = teachers.get(seed) if get_objective(method).needs_teacher else None
                per_seed.append(val_score(train_fn(config, spec, teacher=teacher, splits=splits, progress=False)))
                if on_run:
                    on_run()
            scores.append(ConfigScore(params=params, val_macro_f1=tuple(per_seed)))
        out.append(MethodSearch(method=method, grid=grids[method], scores=tuple(scores), chosen=select(scores).params))
    return SearchRecord(seeds=tuple(seeds), rule=SELECTION_RULE, methods=tuple(out), baseline_val_macro_f1=tuple(reference))


def count_runs(methods: Sequence[str], seeds: Sequence[int], grids: dict[str, dict[str, list[Any]]] | None = None) -> int:
    grids = SEARCH_GRIDS if grids is None else grids
    n = sum(len(grid_points(grids[m])) * len(seeds) for m in methods if m in grids)
    if any(m in grids for m in methods):
        n += len(seeds)
    return n
