"""Training objectives: one object per method, in the spirit of pytorch-metric-learning's losses.

An :class:`Objective` owns its hyperparameters, whether it needs a frozen teacher, the layers
it reads, and how its loss terms combine; the maths lives in :mod:`asl_core.losses`. The
training loop knows none of the methods: it taps the layers the objective asks for, supplies
the teacher's logits when it needs them, and logs whatever terms the objective returns.

Adding a method is one subclass plus one :func:`register_objective` call::

    @register_objective
    class FocalObjective(Objective):
        name = "focal"
        params = {"focal_gamma": 2.0}
        def compute(self, batch):
            ...
            return LossOutput(total, {"focal": float(total.detach())})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from asl_core.losses import FocusingPickingLoss, MultiLayerASLoss, kd_combine, kd_terms


@dataclass
class Batch:
    """What an objective sees for one training batch. ``logits`` ``[B, C]``; ``labels`` ``[B]``;
    ``features``: the tapped layers' pooled outputs ``{name: [B, D]}``, in the autograd graph;
    ``teacher_logits`` ``[B, C]`` (no gradient) for objectives that need a teacher."""

    logits: torch.Tensor
    labels: torch.Tensor
    features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    teacher_logits: torch.Tensor | None = None


@dataclass
class LossOutput:
    """``total`` is optimised. ``terms`` (floats) are logged per epoch as ``train_<name>``,
    ``layer_terms`` under the history's ``layers``; ``stats`` are per-batch mechanism
    counts (summed over the epoch, e.g. the sizes of ClonalNet's confusing sets)."""

    total: torch.Tensor
    terms: dict[str, float]
    layer_terms: dict[str, dict[str, float]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class. Subclasses set ``name``, ``params`` (hyperparameter -> default, in the order
    the metadata records them), ``needs_teacher``, and implement :meth:`compute`."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    needs_teacher: ClassVar[bool] = False

    def __init__(self, **hyperparams: Any):
        super().__init__()
        unknown = sorted(set(hyperparams) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameters {', '.join(unknown)}")
        self.hyperparams = {k: hyperparams.get(k, default) for k, default in self.params.items()}

    def layers(self) -> dict[str, float]:
        """Layer name -> weight of the layers whose outputs :meth:`compute` reads."""
        return {}

    def compute(self, batch: Batch) -> LossOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, batch: Batch) -> LossOutput:
        if self.needs_teacher and batch.teacher_logits is None:
            raise ValueError(f"objective {self.name!r} needs the teacher's logits")
        return self.compute(batch)


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Add a method to the registry (a class decorator). Its ``name`` becomes a ``--method``."""
    if not cls.name:
        raise ValueError("an objective needs a name")
    OBJECTIVES[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """The trainable methods, in registration order."""
    return tuple(OBJECTIVES)


def teacher_methods() -> tuple[str, ...]:
    return tuple(n for n, cls in OBJECTIVES.items() if cls.needs_teacher)


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise KeyError(name)
    return OBJECTIVES[name]


# --------------------------------------------------------------------------- the methods


@register_objective
class CrossEntropyObjective(Objective):
    """The baseline: cross-entropy alone."""

    name = "baseline"

    def compute(self, batch: Batch) -> LossOutput:
        ce = F.cross_entropy(batch.logits, batch.labels)
        return LossOutput(ce, {"ce": float(ce.detach())})


@register_objective
class ASLossObjective(Objective):
    """CE + sum over layers of w_l * ASLoss (METHODS.md section 1). ``layers`` maps layer names to
    weights (the training config fills in the architecture's embedding with ``as_weight``)."""

    name = "asloss"
    params = {"as_weight": 0.03, "distance": "cosine", "radius": 10.0, "lambda_agg": 1.0, "lambda_sep": 1.0,
              "lambda_scope": 0.01, "layers": {}}

    def __init__(self, **hyperparams: Any):
        super().__init__(**hyperparams)
        hp = self.hyperparams
        if not hp["layers"]:
            raise ValueError("asloss needs at least one layer")
        self.multi = MultiLayerASLoss(hp["layers"], distance=hp["distance"], radius=hp["radius"],
                                      lambda_agg=hp["lambda_agg"], lambda_sep=hp["lambda_sep"],
                                      lambda_scope=hp["lambda_scope"])

    def layers(self) -> dict[str, float]:
        return dict(self.hyperparams["layers"])

    def compute(self, batch: Batch) -> LossOutput:
        ce = F.cross_entropy(batch.logits, batch.labels)
        as_total, logs = self.multi(batch.features, batch.labels)
        return LossOutput(ce + as_total, {"ce": float(ce.detach())}, layer_terms=logs)


@register_objective
class FocusingPickingObjective(Objective):
    """ClonalNet: the focusing-picking loss against a frozen baseline's logits (METHODS.md section 2)."""

    name = "clonal"
    params = {"fp_eps": 0.1, "fp_temperature": 2.0, "fp_alpha": 1.0, "fp_beta": 0.0}
    needs_teacher = True

    def __init__(self, **hyperparams: Any):
        super().__init__(**hyperparams)
        hp = self.hyperparams
        self.loss = FocusingPickingLoss(hp["fp_eps"], hp["fp_temperature"], hp["fp_alpha"], hp["fp_beta"])

    def compute(self, batch: Batch) -> LossOutput:
        l_cls, r_pick, r_neg = self.loss.terms(batch.logits, batch.teacher_logits, batch.labels)
        total = self.loss.combine(l_cls, r_pick, r_neg)
        sizes = self.loss.confusing_mask(batch.teacher_logits, batch.labels).sum(dim=1)
        return LossOutput(total, {"fp_cls": float(l_cls.detach()), "fp_pick": float(r_pick.detach()),
                                  "fp_neg": float(r_neg.detach())},
                          stats={"confusing_set_sizes": sizes.detach().cpu()})


@register_objective
class DistillationObjective(Objective):
    """Hinton knowledge distillation: CE + weight * T^2 * KL at temperature T."""

    name = "kd"
    params = {"kd_temperature": 2.0, "kd_weight": 0.5}
    needs_teacher = True

    def compute(self, batch: Batch) -> LossOutput:
        hp = self.hyperparams
        ce, kd = kd_terms(batch.logits, batch.teacher_logits, batch.labels, hp["kd_temperature"])
        return LossOutput(kd_combine(ce, kd, hp["kd_weight"]), {"ce": float(ce.detach()), "kd": float(kd.detach())})
