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

from asl_core.checkpoint import LoadedCheckpoint, content_hash
from asl_core.data import DatasetSpec, Splits
from asl_core.objectives import get_objective
from asl_core.experiment import memo
from asl_core.experiment.memo import memo_key
from asl_core.experiment.parallel import SERIAL, Workers, worker_splits
from asl_core.settings import get_settings
from asl_core.training import TrainConfig, TrainResult, train
from asl_core.training.teaching import prepare_teacher, train_fold_baselines

# Each tuned row gets the same number of base configurations (BASE_CONFIGS, METHODS.md section 5:
# "the same number of configurations scored on validation"); edge extensions come on top and are
# stated per row. An axis lists the values tried besides the method's default; the default itself
# (Objective.params, or TrainConfig's field for lr / weight_decay) is put first by search_grid, so a
# tie keeps it. A "half-fraction" design tries the 2^(k-1) points of a 2^k factorial with an even
# number of axes off their default (k = 3 axes in 4 configurations).
SEARCH_ALTERNATIVES: dict[str, dict[str, list[Any]]] = {
    "ce-tuned": {"lr": [1e-2], "weight_decay": [5e-2], "label_smoothing": [0.0]},
    "conf-penalty": {"cp_beta": [0.3, 3.0, 9.0]},
    "logit-adjusted": {"la_tau": [0.5, 1.5, 2.0]},
    # ASLoss on the architecture's embedding layer (pre-activation for mnist_cnn), smooth-L1
    "asloss": {"as_weight": [0.3], "radius": [0.3704]},
    "clonal": {"fp_alpha": [1.0], "fp_beta": [27.0]},
    "asloss+la": {"as_weight": [0.3], "radius": [0.3704]},
    "clonal+la": {"fp_alpha": [1.0], "fp_beta": [27.0]},
    "kd": {"kd_temperature": [2.0], "kd_weight": [1.0]},
}
SEARCH_DESIGNS: dict[str, str] = {"ce-tuned": "half-fraction"}
BASE_CONFIGS = 4
# a winner at the edge of a numeric axis extends that axis (one step beyond, at most this often)
EXTENSION_ROUNDS = 2
EXTENSION_FACTOR = 3.0
SELECTION_RULE = "highest mean validation macro-F1 over the search seeds; ties go to the configuration listed first"


def axis_default(method: str, axis: str) -> Any:
    """The value a method trains with when not tuned: the registry's, or TrainConfig's field."""
    params = get_objective(method).params
    if axis in params:
        return params[axis]
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == axis)


def search_grid(method: str) -> dict[str, list[Any]]:
    """The method's grid: per axis its default first (read from the registry), then the alternatives."""
    return {axis: [axis_default(method, axis), *(v for v in alts if v != axis_default(method, axis))]
            for axis, alts in SEARCH_ALTERNATIVES[method].items()}


SEARCH_GRIDS: dict[str, dict[str, list[Any]]] = {m: search_grid(m) for m in SEARCH_ALTERNATIVES}

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
    design: str = "product"
    base_configs: int = 0  # configurations of the grid itself (the tuning budget), before extensions
    capped: dict[str, Any] = dataclasses.field(default_factory=dict)  # axis -> value still at an edge when the cap stopped
    inherited: dict[str, Any] = dataclasses.field(default_factory=dict)  # values taken from another row's choice


@dataclass(frozen=True)
class SearchRecord:
    seeds: tuple[int, ...]
    rule: str
    methods: tuple[MethodSearch, ...]
    # the baseline's validation macro-F1 on each search seed: what a tuned method must beat
    baseline_val_macro_f1: tuple[float, ...] = ()
    extension_rounds: int = EXTENSION_ROUNDS

    def chosen(self) -> dict[str, dict[str, Any]]:
        return {m.method: dict(m.chosen) for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": "val",
            "score": "macro_f1",
            "rule": self.rule,
            "seeds": list(self.seeds),
            "baseline_val_macro_f1": list(self.baseline_val_macro_f1),
            "extension_rounds": self.extension_rounds,
            "methods": {
                m.method: {
                    "grid": m.grid,
                    "design": m.design,
                    "base_configs": m.base_configs,
                    "chosen": m.chosen,
                    "extended": m.extended,
                    "capped": m.capped,
                    "inherited": m.inherited,
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
                design=entry.get("design", "product"),
                base_configs=entry.get("base_configs", 0),
                capped=entry.get("capped", {}),
                inherited=entry.get("inherited", {}),
            )
            for name, entry in data["methods"].items()
        )
        return cls(seeds=tuple(data["seeds"]), rule=data["rule"], methods=methods,
                   baseline_val_macro_f1=tuple(data.get("baseline_val_macro_f1", ())),
                   extension_rounds=int(data.get("extension_rounds", EXTENSION_ROUNDS)))


def grid_points(grid: dict[str, list[Any]], design: str = "product") -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest; ``half-fraction`` keeps those with an even
    number of axes away from their first value (a 2^(k-1) design when every axis has 2 values)."""
    keys = list(grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    if design == "half-fraction":
        points = [p for p in points if sum(p[k] != grid[k][0] for k in keys) % 2 == 0]
    elif design != "product":
        raise ValueError(f"unknown design {design!r}")
    return points


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


def teacher_key(extra: dict[str, Any]) -> list[str]:
    """What identifies a student's teacher: the content hashes of the teacher and its stand-ins."""
    out = []
    if extra.get("teacher") is not None:
        t = extra["teacher"]
        out.append(t.meta.content_hash or content_hash(t.model.state_dict(), t.meta))
    if extra.get("folds") is not None:
        out += extra["folds"].hashes
    return out


def student_kwargs(config: TrainConfig, extra: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """``train``'s teacher argument from a seed's teacher checkpoint and its stand-ins."""
    if not extra.get("teacher") or not get_objective(config.method).needs_teacher:
        return {}
    if splits is None:  # a test's stand-in training function gets the checkpoint itself
        return {"teacher": extra["teacher"]}
    return {"teacher": prepare_teacher(config, extra["teacher"], splits, extra.get("folds"))}


def _val_job(job: tuple) -> float:
    """One grid point on one seed, in a worker: the validation score only (memoised on disk)."""
    config, spec, extra = job
    key = memo_key("val", config.arch, config.method, config.hyperparams(), spec.to_dict(), teacher_key(extra))
    cached = memo.load(key)
    if cached is not None:
        return float(cached)
    splits = worker_splits(spec)
    score = val_score(train(config, spec, splits=splits, progress=False, **student_kwargs(config, extra, splits)))
    memo.store(key, score)
    return score


def _teacher_job(job: tuple) -> dict[str, Any]:
    """The teacher of one search seed (the baseline, or another row at its choice) and, when the
    teacher mode asks, its out-of-fold stand-ins trained with the same recipe."""
    config, spec, with_folds = job
    splits = worker_splits(spec)
    res = train(config, spec, splits=splits, progress=False)
    extra: dict[str, Any] = {"teacher": LoadedCheckpoint(model=res.model, meta=res.meta), "val": val_score(res)}
    if with_folds and config.teacher_mode == "oof":
        extra["folds"] = train_fold_baselines(config, splits, config.teacher_folds, config.seed,
                                              get_settings().cache_dir / "training")
    return extra


def search_order(methods: Sequence[str]) -> list[str]:
    """Rows in an order where a row's teacher and the rows it inherits from come first."""
    def parents(m: str) -> set[str]:
        cls = get_objective(m)
        return {cls.teacher_method, *cls.inherits.values()} if cls.needs_teacher else set(cls.inherits.values())

    order: list[str] = []
    pending = list(methods)
    while pending:
        for m in pending:
            if not (parents(m) & set(pending)) - {m}:
                order.append(m)
                pending.remove(m)
                break
        else:
            raise ValueError(f"rows {pending} depend on each other")
    return order


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
    extension_rounds: int = EXTENSION_ROUNDS,
    designs: dict[str, str] | None = None,
    on_method: Callable[[SearchRecord], None] | None = None,
) -> SearchRecord:
    """Grid-search every method in ``methods`` that has a grid (the baseline has none; ablations
    take their parent's choice), on the validation split of ``seeds``. A winner at the edge of a
    numeric axis extends that axis (``edge_extensions``), at most ``extension_rounds`` times; the
    record says what was extended and what still sat at an edge when the cap stopped it.

    ``base`` carries the shared settings (architecture, epochs, device, teacher mode). A method
    that needs a teacher learns from its ``teacher_method`` trained with ``base`` on the same
    search seed (the baseline, or the logit-adjusted row at its chosen settings), and from its
    out-of-fold stand-ins with ``teacher_mode="oof"``. Values a row ``inherits`` (``la_tau`` of the
    +la rows) are the parent row's choice. ``workers`` may train in parallel processes (same
    results); ``train_fn`` (tests) replaces training, serially."""
    grids = SEARCH_GRIDS if grids is None else grids
    designs = SEARCH_DESIGNS if designs is None else designs
    if not seeds:
        raise ValueError("the search needs at least one seed")
    tuned = search_order([m for m in methods if m in grids])
    if train_fn is not None:  # serial, with the given training function (tests)
        def teacher_job(job):
            config, sp, _ = job
            res = train_fn(config, sp, splits=splits, progress=False)
            return {"teacher": LoadedCheckpoint(model=res.model, meta=res.meta), "val": val_score(res)}

        def val_job(job):
            config, sp, extra = job
            return val_score(train_fn(config, sp, splits=splits, progress=False, **student_kwargs(config, extra, splits)))

        run_map = lambda fn, jobs: SERIAL.map(fn, jobs, on_done=on_run)  # noqa: E731
    else:
        teacher_job, val_job = _teacher_job, _val_job
        run_map = lambda fn, jobs: workers.map(fn, jobs, on_done=on_run)  # noqa: E731

    chosen_by: dict[str, dict[str, Any]] = {}
    teachers: dict[str, dict[int, dict[str, Any]]] = {}

    def teacher_config(method: str) -> TrainConfig:
        return base.with_params(method, **chosen_by.get(method, {}))

    def teachers_of(method: str) -> dict[int, dict[str, Any]]:
        if method not in teachers:
            with_folds = any(get_objective(m).needs_teacher and get_objective(m).teacher_method == method for m in tuned)
            cfg = teacher_config(method)
            jobs = [(dataclasses.replace(cfg, seed=seed), spec, with_folds) for seed in seeds]
            teachers[method] = dict(zip(seeds, run_map(teacher_job, jobs)))
        return teachers[method]

    reference: list[float] = []
    if tuned:  # the teachers of clonal/kd, and the bar every method is read against
        reference = [teachers_of("baseline")[s]["val"] for s in seeds]

    out = []
    for method in tuned:
        cls = get_objective(method)
        arch = student_arch if (student_arch and cls.needs_teacher) else base.arch
        inherited = {k: chosen_by[parent][k] for k, parent in cls.inherits.items()
                     if parent in chosen_by and k in chosen_by[parent]}
        per_seed = teachers_of(cls.teacher_method) if cls.needs_teacher else {}

        def score_all(points: list[dict[str, Any]]) -> list[ConfigScore]:
            jobs = [(dataclasses.replace(base.with_params(method, **inherited, **params), seed=seed, arch=arch), spec,
                     {k: v for k, v in per_seed.get(seed, {}).items() if k != "val"}) for params in points for seed in seeds]
            values = run_map(val_job, jobs)
            n = len(seeds)
            return [ConfigScore(params=params, val_macro_f1=tuple(values[i * n:(i + 1) * n])) for i, params in enumerate(points)]

        design = designs.get(method, "product")
        base_points = grid_points(grids[method], design)
        scores = score_all(base_points)
        tried = {k: list(v) for k, v in grids[method].items()}
        extended: dict[str, list[Any]] = {}
        capped: dict[str, Any] = {}
        for round_ in range((extension_rounds if extend else 0) + 1):
            chosen = select(scores).params
            beyond = edge_extensions(grids[method], chosen, tried)
            if not beyond:
                break
            if round_ == (extension_rounds if extend else 0):
                capped = {axis: chosen[axis] for axis in beyond}  # still at an edge: the cap stopped it
                break
            points = []
            for axis, value in beyond.items():
                tried[axis].append(value)
                extended.setdefault(axis, []).append(value)
                points.append({**chosen, axis: value})
            scores += score_all(points)
        chosen_by[method] = {**inherited, **select(scores).params}
        out.append(MethodSearch(method=method, grid=grids[method], scores=tuple(scores), chosen=chosen_by[method],
                                extended=extended, design=design, base_configs=len(base_points), capped=capped,
                                inherited=inherited))
        if on_method is not None:  # the record so far (an experiment writes it as it goes)
            on_method(SearchRecord(seeds=tuple(seeds), rule=SELECTION_RULE, methods=tuple(out),
                                   baseline_val_macro_f1=tuple(reference), extension_rounds=extension_rounds if extend else 0))
    return SearchRecord(seeds=tuple(seeds), rule=SELECTION_RULE, methods=tuple(out), baseline_val_macro_f1=tuple(reference),
                        extension_rounds=extension_rounds if extend else 0)


def count_runs(methods: Sequence[str], seeds: Sequence[int], grids: dict[str, dict[str, list[Any]]] | None = None,
               designs: dict[str, str] | None = None) -> int:
    """Runs of the grid itself and the search's teachers (edge extensions add more as they happen)."""
    grids = SEARCH_GRIDS if grids is None else grids
    designs = SEARCH_DESIGNS if designs is None else designs
    tuned = [m for m in methods if m in grids]
    n = sum(len(grid_points(grids[m], designs.get(m, "product"))) * len(seeds) for m in tuned)
    teacher_methods = {"baseline"} | {get_objective(m).teacher_method for m in tuned if get_objective(m).needs_teacher}
    if tuned:
        n += len(teacher_methods) * len(seeds)
    return n
