"""The training configuration: one frozen dataclass that the CLI, the experiment and the demo fill in."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from asl_core.data.augment import NO_AUGMENTATION, Augmentation
from asl_core.data.samplers import SAMPLERS
from asl_core.errors import UserError
from asl_core.losses import DISTANCES
from asl_core.models import ARCHITECTURES, embedding_layer
from asl_core.objectives import Objective, get_objective, method_names

TEACHER_MODES = ("live", "oof", "fixed")

COMMON_HYPERPARAMS = ("epochs", "batch_size", "lr", "weight_decay", "seed")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "baseline"
    arch: str = "digits_cnn"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    # The method's own hyperparameters. None (the default) means the objective's own default:
    # Objective.params in asl_core/objectives.py is the single home of every method's training
    # defaults (tests/core/test_defaults.py). A value set here applies to every method that has a
    # hyperparameter of that name (e.g. fp_beta for clonal, clonal+la).
    # ASLoss: layer -> weight; empty means the architecture's embedding layer with `as_weight`
    layers: dict[str, float] = field(default_factory=dict)
    as_weight: float | None = None
    distance: str | None = None
    radius: float | None = None
    lambda_agg: float | None = None
    lambda_sep: float | None = None
    lambda_scope: float | None = None
    # ClonalNet
    fp_eps: float | None = None
    fp_temperature: float | None = None
    fp_alpha: float | None = None
    fp_beta: float | None = None
    # KD
    kd_temperature: float | None = None
    kd_weight: float | None = None
    # hyperparameters of methods without a field above (a newly registered objective's own)
    method_params: dict[str, Any] = field(default_factory=dict)
    # Per-batch augmentation, the same for every method (METHODS.md section 3): a rotation of up
    # to aug_rotation degrees, a shift of up to aug_shift of the side, a zoom of up to aug_scale;
    # horizontal flips only where the dataset spec allows them. Seeded from `seed`.
    augment: bool = True
    aug_rotation: float = 12.0
    aug_shift: float = 0.07
    aug_scale: float = 0.1
    # "random" batches, or "balanced" ones (same-class pairs for the tail classes; asl_core.data.samplers)
    sampler: str = "random"
    # where a teacher's logits come from (asl_core.training.teachers): live, oof (K folds) or fixed
    teacher_mode: str = "live"
    teacher_folds: int = 5
    small_input: bool | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in method_names():
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(method_names())}")
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.distance is not None and self.distance not in DISTANCES:
            raise UserError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1")
        for name in ("lr", "weight_decay", "as_weight", "radius", "lambda_agg", "lambda_sep", "lambda_scope",
                     "fp_alpha", "fp_beta", "kd_weight", "kd_temperature", "fp_temperature"):
            v = getattr(self, name)
            if v is None and name not in ("lr", "weight_decay"):
                continue
            if not math.isfinite(v) or v < 0:
                raise UserError(f"{name} must be a finite number >= 0, got {v}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.teacher_mode not in TEACHER_MODES:
            raise UserError(f"unknown teacher mode {self.teacher_mode!r}; choose one of {', '.join(TEACHER_MODES)}")
        if self.teacher_folds < 2:
            raise UserError("teacher_folds must be >= 2")
        try:
            self.augmentation()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        unknown = sorted(set(self.method_params) - set(get_objective(self.method).params))
        if unknown:
            raise UserError(f"method {self.method!r} has no hyperparameters {', '.join(unknown)}")

    def augmentation(self, flips_allowed: bool = False) -> Augmentation:
        if not self.augment:
            return NO_AUGMENTATION
        return Augmentation(self.aug_rotation, self.aug_shift, self.aug_scale, flip=flips_allowed)

    def layer_weights(self) -> dict[str, float]:
        if self.layers:
            return dict(self.layers)
        weight = self.method_params.get("as_weight", self.as_weight)
        if weight is None:
            cls = get_objective(self.method)
            weight = cls.params.get("as_weight", get_objective("asloss").params["as_weight"])
        return {embedding_layer(self.arch): weight}

    def objective_params(self) -> dict[str, Any]:
        """The method's hyperparameters: its own defaults (``Objective.params``), overridden by this
        config's fields of the same name that are set (not None) and by ``method_params``."""
        cls = get_objective(self.method)
        params = dict(cls.params)
        params.update({k: getattr(self, k) for k in cls.params if getattr(self, k, None) is not None})
        params.update(self.method_params)
        if "layers" in cls.params:
            params["layers"] = self.layer_weights()
        return params

    def build_objective(self) -> Objective:
        try:
            return get_objective(self.method)(**self.objective_params())
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def hyperparams(self) -> dict[str, Any]:
        """What the checkpoint records: the shared optimiser settings, then the method's own."""
        out: dict[str, Any] = {k: getattr(self, k) for k in COMMON_HYPERPARAMS}
        out.update(augmentation=self.augmentation().to_dict() if self.augment else None, sampler=self.sampler)
        if get_objective(self.method).needs_teacher:
            out.update(teacher_mode=self.teacher_mode, **({"teacher_folds": self.teacher_folds} if self.teacher_mode == "oof" else {}))
        out.update({k: v for k, v in self.objective_params().items() if k != "layers"})
        out.update(get_objective(self.method).fixed)
        return out

    def with_params(self, method: str | None = None, **params: Any) -> TrainConfig:
        """This config for ``method`` with ``params`` set: a field of TrainConfig (lr, fp_beta, ...)
        by its field, any other hyperparameter of the method through ``method_params``."""
        fields = {f.name for f in dataclasses.fields(self)}
        direct = {k: v for k, v in params.items() if k in fields}
        rest = {k: v for k, v in params.items() if k not in fields}
        method = method or self.method
        keep = {k: v for k, v in self.method_params.items() if k in get_objective(method).params}
        return dataclasses.replace(self, method=method, method_params={**keep, **rest}, **direct)


def method_defaults(method: str) -> dict[str, Any]:
    """A method's training defaults: the registry's ``Objective.params`` (without ``layers``)."""
    return {k: v for k, v in get_objective(method).params.items() if k != "layers"}
