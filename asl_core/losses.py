"""The project's losses, exactly as METHODS.md defines them.

- :class:`ASLoss`: aggregation-separation loss on one layer's ``[B, D]`` representation.
- :class:`MultiLayerASLoss`: a weighted sum of ASLoss over several named layers.
- :class:`FocusingPickingLoss`: ClonalNet's loss against a frozen baseline's logits.
- :func:`kd_loss`: Hinton knowledge distillation (KL at temperature T, times T^2) plus CE.

Distances are injected objects with a ``pairwise(a, b) -> [P]`` method on row-aligned
``[P, D]`` tensors, so the loss itself has no branch per distance.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- distances


class Distance:
    """A pairwise distance. ``matrix(h)`` gives the ``[B, B]`` distances between the rows of
    ``h`` [B, D]; ``pairwise(a, b)`` the ``[P]`` distances between aligned rows."""

    name = "distance"

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def matrix(self, h: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        return self.pairwise(h[:, None, :].expand(b, b, -1), h[None, :, :].expand(b, b, -1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"


class SmoothL1Distance(Distance):
    """Mean over the D dimensions of SmoothL1(a - b) with beta = 1."""

    name = "smooth_l1"

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(a, b, reduction="none", beta=1.0).mean(dim=-1)

    def matrix(self, h: torch.Tensor) -> torch.Tensor:
        # one [B, B, D] difference tensor; no matmul form exists for smooth-L1
        b, d = h.shape
        return F.smooth_l1_loss(h[:, None, :].expand(b, b, d), h[None, :, :].expand(b, b, d), reduction="none", beta=1.0).mean(-1)


class EuclideanDistance(Distance):
    """||a - b||_2 (the gradient at a == b is 0, as torch defines it)."""

    name = "euclidean"

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a - b, dim=-1)

    def matrix(self, h: torch.Tensor) -> torch.Tensor:
        # the direct (not matmul-expanded) form: exact for near-identical rows
        return torch.cdist(h, h, compute_mode="donot_use_mm_for_euclid_dist")


class CosineDistance(Distance):
    """1 - cos(a, b); norms are clamped at 1e-8 as in torch.nn.functional.cosine_similarity."""

    name = "cosine"

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(a, b, dim=-1)

    def matrix(self, h: torch.Tensor) -> torch.Tensor:
        unit = h / torch.linalg.vector_norm(h, dim=1, keepdim=True).clamp_min(1e-8)
        return 1.0 - unit @ unit.T


DISTANCES: dict[str, type[Distance]] = {
    "smooth_l1": SmoothL1Distance,
    "euclidean": EuclideanDistance,
    "cosine": CosineDistance,
}


def get_distance(distance: str | Distance | None) -> Distance:
    if distance is None:
        return SmoothL1Distance()
    if isinstance(distance, Distance):
        return distance
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    return DISTANCES[distance]()


def _check_features(h: torch.Tensor, y: torch.Tensor) -> None:
    if h.dim() != 2:
        raise ValueError(f"expected features of shape [B, D], got {tuple(h.shape)} (pool conv maps first)")
    if y.dim() != 1 or y.shape[0] != h.shape[0]:
        raise ValueError(f"expected labels of shape [{h.shape[0]}], got {tuple(y.shape)}")


# --------------------------------------------------------------------------- ASLoss


class ASLoss(nn.Module):
    """Aggregation Separation Loss for one layer (METHODS.md section 1).

    ``AS = lambda_agg * L_agg - lambda_sep * L_sep + lambda_scope * L_scope`` with the pair
    means taken over ordered pairs ``i != j``: one ``[B, B]`` distance matrix, masked by
    label equality with the diagonal removed (no Python loop).
    """

    def __init__(
        self,
        distance: str | Distance | None = "smooth_l1",
        radius: float = 10.0,
        lambda_agg: float = 1.0,
        lambda_sep: float = 1.0,
        lambda_scope: float = 1.0,
    ):
        super().__init__()
        if radius < 0:
            raise ValueError("radius must be >= 0")
        self.distance = get_distance(distance)
        self.radius = float(radius)
        self.lambda_agg = float(lambda_agg)
        self.lambda_sep = float(lambda_sep)
        self.lambda_scope = float(lambda_scope)

    def terms(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L_agg, L_sep, L_scope)`` for features ``h`` [B, D] and labels ``y`` [B]."""
        _check_features(h, y)
        b = h.shape[0]
        zero = h.new_zeros(())
        l_scope = ((torch.linalg.vector_norm(h, dim=1) - self.radius) ** 2).mean() if b else zero
        if b < 2:
            return zero, zero, l_scope
        d = self.distance.matrix(h)
        label_eq = y[:, None] == y[None, :]
        same = label_eq & ~torch.eye(b, dtype=torch.bool, device=h.device)
        diff = ~label_eq
        l_agg = torch.where(same, d, zero).sum() / same.sum().clamp(min=1)
        l_sep = torch.where(diff, d, zero).sum() / diff.sum().clamp(min=1)
        return l_agg, l_sep, l_scope

    def combine(self, l_agg: torch.Tensor, l_sep: torch.Tensor, l_scope: torch.Tensor) -> torch.Tensor:
        return self.lambda_agg * l_agg - self.lambda_sep * l_sep + self.lambda_scope * l_scope

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.combine(*self.terms(h, y))

    def extra_repr(self) -> str:
        return (
            f"distance={self.distance.name}, radius={self.radius}, lambda_agg={self.lambda_agg}, "
            f"lambda_sep={self.lambda_sep}, lambda_scope={self.lambda_scope}"
        )


class MultiLayerASLoss(nn.Module):
    """``sum_l w_l * AS_l`` over several layers, one ASLoss configuration shared by all."""

    def __init__(self, layer_weights: Mapping[str, float], **asloss_kwargs):
        super().__init__()
        if not layer_weights:
            raise ValueError("ASLoss needs at least one layer")
        self.layer_weights = dict(layer_weights)
        self.asloss = ASLoss(**asloss_kwargs)

    def forward(
        self, features: Mapping[str, torch.Tensor], y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
        """Returns the weighted total and, per layer, the detached terms for logging."""
        total = None
        logs: dict[str, dict[str, float]] = {}
        for name, weight in self.layer_weights.items():
            l_agg, l_sep, l_scope = self.asloss.terms(features[name], y)
            as_l = self.asloss.combine(l_agg, l_sep, l_scope)
            total = weight * as_l if total is None else total + weight * as_l
            logs[name] = {
                "agg": float(l_agg.detach()),
                "sep": float(l_sep.detach()),
                "scope": float(l_scope.detach()),
                "as": float(as_l.detach()),
            }
        return total, logs


# --------------------------------------------------------------------------- ClonalNet


class FocusingPickingLoss(nn.Module):
    """ClonalNet's focusing-picking loss (METHODS.md section 2).

    ``L_FP = L_cls + alpha * R_pick + beta * R_neg``; the teacher logits never receive a
    gradient; gradient flows through ``p = softmax(z)`` inside ``L_cls``.
    """

    def __init__(self, eps: float = 0.1, temperature: float = 2.0, alpha: float = 1.0, beta: float = 1.0):
        super().__init__()
        if not 0.0 <= eps < 1.0:
            raise ValueError("eps must be in [0, 1)")
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.eps = float(eps)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def confusing_mask(self, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``S`` as a boolean ``[B, C]`` mask: classes the baseline finds plausible, plus y."""
        c = teacher_logits.shape[1]
        mask = F.softmax(teacher_logits.detach() / self.temperature, dim=1) > 1.0 / c
        return mask.scatter(1, labels.view(-1, 1), True)

    def terms(
        self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
        logit_offset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L_cls, R_pick, R_neg)``, each a mean over the batch. ``logit_offset`` ``[C]`` (no
        gradient) is added to the logits inside ``L_cls`` only: ``tau * log(prior)`` makes it
        Menon et al.'s logit-adjusted cross-entropy (``clonal+la``); ``p``, ``R_pick`` and
        ``R_neg`` read the unadjusted logits, which are also what predicts."""
        if logits.shape != teacher_logits.shape or logits.dim() != 2:
            raise ValueError(f"logits {tuple(logits.shape)} and teacher logits {tuple(teacher_logits.shape)} must both be [B, C]")
        c = logits.shape[1]
        t = teacher_logits.detach()
        p = F.softmax(logits, dim=1)
        q = F.softmax(t, dim=1)
        target = F.one_hot(labels, c).to(logits.dtype) * (1.0 - self.eps) + self.eps / c
        shifted = logits + (p - q)
        if logit_offset is not None:
            shifted = shifted + logit_offset.detach()
        l_cls = F.cross_entropy(shifted, target)
        mask = self.confusing_mask(t, labels)
        m = mask.to(logits.dtype) / mask.sum(dim=1, keepdim=True)
        log_p = F.log_softmax(logits, dim=1)
        r_pick = -(m * log_p).sum(dim=1).mean()
        r_neg = (p * log_p).sum(dim=1).mean()
        return l_cls, r_pick, r_neg

    def combine(self, l_cls: torch.Tensor, r_pick: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
        return l_cls + self.alpha * r_pick + self.beta * r_neg

    def forward(self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.combine(*self.terms(logits, teacher_logits, labels))


def kd_terms(
    logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinton KD: ``(CE(z, y), T^2 * KL(softmax(t/T) || softmax(z/T)))``, batch means."""
    t = teacher_logits.detach()
    ce = F.cross_entropy(logits, labels)
    kl = F.kl_div(
        F.log_softmax(logits / temperature, dim=1), F.log_softmax(t / temperature, dim=1), reduction="batchmean", log_target=True
    )
    return ce, kl * temperature**2


def kd_combine(ce: torch.Tensor, kd: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return ce + weight * kd


def kd_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0, weight: float = 1.0
) -> torch.Tensor:
    return kd_combine(*kd_terms(logits, teacher_logits, labels, temperature), weight)
