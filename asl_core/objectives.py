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
    the metadata records them), ``needs_teacher``, and implement :meth:`compute`.

    ``params`` is the single home of a method's training defaults: ``TrainConfig``, the CLI flags
    and the search grids read them from here (tests/core/test_defaults.py fails if they disagree).
    ``fixed``: hyperparameters an ablation pins (recorded, never tunable). ``teacher_method``: the
    method whose model teaches this one (its recipe also trains the out-of-fold stand-ins).
    ``inherits``: hyperparameter -> the method whose tuned value this one takes (not searched
    again). ``ablation_of``: the method whose tuned values an ablation keeps, one term removed."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    fixed: ClassVar[dict[str, Any]] = {}
    needs_teacher: ClassVar[bool] = False
    teacher_method: ClassVar[str] = "baseline"
    inherits: ClassVar[dict[str, str]] = {}
    ablation_of: ClassVar[str | None] = None

    def __init__(self, **hyperparams: Any):
        super().__init__()
        unknown = sorted(set(hyperparams) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameters {', '.join(unknown)}")
        self.hyperparams = {k: hyperparams.get(k, default) for k, default in self.params.items()}
        self.hyperparams.update(self.fixed)

    def prepare(self, class_counts: torch.Tensor) -> None:
        """Called once before training with the training split's per-class counts ``[C]``
        (logit adjustment reads its prior from them). Default: nothing."""

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


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    """``log(pi_c)`` from training counts (a class absent from training counts as 1 sample, so
    the adjustment stays finite)."""
    counts = class_counts.double().clamp(min=1.0)
    return torch.log(counts / counts.sum()).float()


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
    # Tuned on validation (docs/results/mnist-lt.md): mnist-lt, mnist_cnn, the pre-activation embedding.
    # The paper's plain form (r = 10, every lambda 1) is ASLoss()'s constructor default and the asloss-paper row.
    params = {"as_weight": 0.1, "distance": "smooth_l1", "radius": 1.111, "lambda_agg": 1.0, "lambda_sep": 1.0,
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

    def classification_loss(self, batch: Batch) -> tuple[torch.Tensor, str]:
        return F.cross_entropy(batch.logits, batch.labels), "ce"

    def compute(self, batch: Batch) -> LossOutput:
        ce, ce_name = self.classification_loss(batch)
        as_total, logs = self.multi(batch.features, batch.labels)
        return LossOutput(ce + as_total, {ce_name: float(ce.detach())}, layer_terms=logs)


@register_objective
class FocusingPickingObjective(Objective):
    """ClonalNet: the focusing-picking loss against a frozen baseline's logits (METHODS.md section 2)."""

    name = "clonal"
    # alpha, beta tuned on validation (docs/results/mnist-lt.md); eps and T are METHODS.md's. The
    # authors' alpha = beta = 1 is FocusingPickingLoss()'s constructor default and the clonal-paper row.
    params = {"fp_eps": 0.1, "fp_temperature": 2.0, "fp_alpha": 0.3, "fp_beta": 9.0}
    needs_teacher = True

    def __init__(self, **hyperparams: Any):
        super().__init__(**hyperparams)
        hp = self.hyperparams
        self.loss = FocusingPickingLoss(hp["fp_eps"], hp["fp_temperature"], hp["fp_alpha"], hp["fp_beta"])

    def logit_offset(self, logits: torch.Tensor) -> torch.Tensor | None:
        """Added to the logits inside L_cls (``clonal+la``: tau * log(prior)); none here."""
        return None

    def compute(self, batch: Batch) -> LossOutput:
        l_cls, r_pick, r_neg = self.loss.terms(batch.logits, batch.teacher_logits, batch.labels,
                                                    self.logit_offset(batch.logits))
        total = self.loss.combine(l_cls, r_pick, r_neg)
        sizes = self.loss.confusing_mask(batch.teacher_logits, batch.labels).sum(dim=1)
        return LossOutput(total, {"fp_cls": float(l_cls.detach()), "fp_pick": float(r_pick.detach()),
                                  "fp_neg": float(r_neg.detach())},
                          stats={"confusing_set_sizes": sizes.detach().cpu()})


@register_objective
class DistillationObjective(Objective):
    """Hinton knowledge distillation: CE + weight * T^2 * KL at temperature T."""

    name = "kd"
    params = {"kd_temperature": 0.2222, "kd_weight": 0.5}  # tuned on validation (docs/results/mnist-lt.md)
    needs_teacher = True

    def compute(self, batch: Batch) -> LossOutput:
        hp = self.hyperparams
        ce, kd = kd_terms(batch.logits, batch.teacher_logits, batch.labels, hp["kd_temperature"])
        return LossOutput(kd_combine(ce, kd, hp["kd_weight"]), {"ce": float(ce.detach()), "kd": float(kd.detach())})


# --------------------------------------------------------------------------- controls (METHODS.md section 5)


@register_objective
class TunedCrossEntropyObjective(Objective):
    """``ce-tuned``: CE(z, (1 - eps) * onehot(y) + eps / C), label smoothing ``eps``; the search
    also tunes TrainConfig's ``lr`` and ``weight_decay`` for it (the same budget as the methods)."""

    name = "ce-tuned"
    params = {"label_smoothing": 0.1}

    def compute(self, batch: Batch) -> LossOutput:
        ce = F.cross_entropy(batch.logits, batch.labels, label_smoothing=self.hyperparams["label_smoothing"])
        return LossOutput(ce, {"ce": float(ce.detach())})


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``R_neg = mean over the batch of sum_j p_j log p_j`` (METHODS.md section 2)."""
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


@register_objective
class ConfidencePenaltyObjective(Objective):
    """``conf-penalty`` (Pereyra et al., 2017): CE(z, y) + beta * sum_j p_j log p_j, no teacher.
    Minimising it raises the entropy of p: the R_neg part of the focusing-picking loss alone."""

    name = "conf-penalty"
    params = {"cp_beta": 1.0}

    def compute(self, batch: Batch) -> LossOutput:
        ce = F.cross_entropy(batch.logits, batch.labels)
        r_neg = neg_entropy(batch.logits)
        return LossOutput(ce + self.hyperparams["cp_beta"] * r_neg, {"ce": float(ce.detach()), "r_neg": float(r_neg.detach())})


class _LogitAdjusted:
    """Mixin: ``tau * log(pi)`` from the training counts (set by :meth:`Objective.prepare`)."""

    def prepare(self, class_counts: torch.Tensor) -> None:
        self.register_buffer("log_prior", log_prior(class_counts), persistent=False)

    def adjustment(self, like: torch.Tensor) -> torch.Tensor:
        if getattr(self, "log_prior", None) is None:
            raise ValueError(f"objective {self.name!r} needs the class prior: call prepare(class_counts) first")
        return (self.hyperparams["la_tau"] * self.log_prior).to(like)

    def adjusted_ce(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(batch.logits + self.adjustment(batch.logits), batch.labels)


@register_objective
class LogitAdjustedObjective(_LogitAdjusted, Objective):
    """``logit-adjusted`` (Menon et al., ICLR 2021): train on CE(z + tau * log(pi), y) with pi the
    training frequencies; the model's own logits z predict (argmax z), as every checkpoint does."""

    name = "logit-adjusted"
    params = {"la_tau": 1.0}

    def compute(self, batch: Batch) -> LossOutput:
        ce = self.adjusted_ce(batch)
        return LossOutput(ce, {"ce_la": float(ce.detach())})


@register_objective
class ASLossLogitAdjustedObjective(_LogitAdjusted, ASLossObjective):
    """``asloss+la``: ASLoss as the adjunct it claims to be, on top of the strongest control:
    CE(z + tau * log(pi), y) + sum_l w_l * AS_l. ``la_tau`` is the logit-adjusted row's tuned value."""

    name = "asloss+la"
    params = {**ASLossObjective.params, "la_tau": LogitAdjustedObjective.params["la_tau"]}
    inherits = {"la_tau": "logit-adjusted"}

    def classification_loss(self, batch: Batch) -> tuple[torch.Tensor, str]:
        return self.adjusted_ce(batch), "ce_la"


@register_objective
class FocusingPickingLogitAdjustedObjective(_LogitAdjusted, FocusingPickingObjective):
    """``clonal+la``: the focusing-picking loss with its cross-entropy logit-adjusted,
    L_cls = CE(z + (p - q) + tau * log(pi), soft target); R_pick and R_neg read p = softmax(z).
    Its frozen teacher is the logit-adjusted model (and, out of fold, K models trained with that
    recipe), so q and S come from a teacher already corrected for the long tail."""

    name = "clonal+la"
    params = {**FocusingPickingObjective.params, "la_tau": LogitAdjustedObjective.params["la_tau"]}
    teacher_method = "logit-adjusted"
    inherits = {"la_tau": "logit-adjusted"}

    def logit_offset(self, logits: torch.Tensor) -> torch.Tensor | None:
        return self.adjustment(logits)


# --------------------------------------------------------------------------- ablations (METHODS.md section 5)


@register_objective
class ASLossScopeOnlyObjective(ASLossObjective):
    """``asloss-scope-only``: the tuned ASLoss with lambda_agg = lambda_sep = 0 (the norm penalty alone)."""

    name = "asloss-scope-only"
    params = {k: v for k, v in ASLossObjective.params.items() if k not in ("lambda_agg", "lambda_sep")}
    fixed = {"lambda_agg": 0.0, "lambda_sep": 0.0}
    ablation_of = "asloss"


@register_objective
class ASLossNoScopeObjective(ASLossObjective):
    """``asloss-no-scope``: the tuned ASLoss with lambda_scope = 0 (aggregation/separation alone)."""

    name = "asloss-no-scope"
    params = {k: v for k, v in ASLossObjective.params.items() if k not in ("lambda_scope", "radius")}
    fixed = {"lambda_scope": 0.0, "radius": ASLossObjective.params["radius"]}  # r is unused without the scope term
    ablation_of = "asloss"


@register_objective
class FocusingPickingNoNegObjective(FocusingPickingObjective):
    """``clonal-no-neg``: the tuned focusing-picking loss with beta = 0 (no confidence penalty)."""

    name = "clonal-no-neg"
    params = {k: v for k, v in FocusingPickingObjective.params.items() if k != "fp_beta"}
    fixed = {"fp_beta": 0.0}
    ablation_of = "clonal"
