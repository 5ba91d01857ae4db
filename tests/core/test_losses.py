"""ASLoss against a plain loop over explicit pairs: values and gradients, every distance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asl_core.losses import ASLoss, MultiLayerASLoss

DISTANCES = ["smooth_l1", "euclidean", "cosine"]


def pair_distance(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if name == "smooth_l1":
        d = (a - b).abs()
        return torch.where(d < 1.0, 0.5 * d**2, d - 0.5).mean()
    if name == "euclidean":
        return torch.sqrt(((a - b) ** 2).sum()) if not torch.equal(a, b) else (a - b).sum() * 0
    return 1 - (a * b).sum() / (a.norm().clamp_min(1e-8) * b.norm().clamp_min(1e-8))


def loop_terms(name, h, y, radius):
    """METHODS.md section 1 written out literally: ordered pairs i != j."""
    same, diff = [], []
    for i in range(h.shape[0]):
        for j in range(h.shape[0]):
            if i == j:
                continue
            (same if y[i] == y[j] else diff).append(pair_distance(name, h[i], h[j]))
    zero = h.sum() * 0
    l_agg = torch.stack(same).mean() if same else zero
    l_sep = torch.stack(diff).mean() if diff else zero
    l_scope = torch.stack([(h[i].norm() - radius) ** 2 for i in range(h.shape[0])]).mean()
    return l_agg, l_sep, l_scope


BATCHES = {
    "mixed": torch.tensor([0, 1, 0, 2, 1, 1, 3, 0]),
    "one_class": torch.tensor([2, 2, 2, 2, 2]),
    "singletons": torch.tensor([0, 1, 2, 3, 4, 5]),
    "pair": torch.tensor([1, 1]),
}


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_asloss_matches_pair_loop(distance, batch, dtype):
    torch.manual_seed(0)
    y = BATCHES[batch]
    h = (3 * torch.randn(len(y), 7, dtype=dtype)).requires_grad_()
    h_ref = h.detach().clone().requires_grad_()
    loss = ASLoss(distance=distance, radius=4.0, lambda_agg=0.7, lambda_sep=1.3, lambda_scope=0.2)

    terms = loss.terms(h, y)
    ref = loop_terms(distance, h_ref, y, 4.0)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for got, want in zip(terms, ref):
        torch.testing.assert_close(got, want, **tol)

    total = loss(h, y)
    total_ref = 0.7 * ref[0] - 1.3 * ref[1] + 0.2 * ref[2]
    torch.testing.assert_close(total, total_ref, **tol)
    total.backward()
    total_ref.backward()
    torch.testing.assert_close(h.grad, h_ref.grad, **tol)


def test_empty_pair_sets_are_zero():
    h = torch.randn(4, 3)
    l_agg, l_sep, _ = ASLoss().terms(h, torch.arange(4))
    assert float(l_agg) == 0.0 and float(l_sep) > 0
    l_agg, l_sep, _ = ASLoss().terms(h, torch.zeros(4, dtype=torch.long))
    assert float(l_sep) == 0.0 and float(l_agg) > 0


def test_duplicate_points_have_finite_gradient():
    # Euclidean distance between identical rows: the gradient must not be NaN.
    h = torch.ones(3, 5, requires_grad=True)
    ASLoss(distance="euclidean")(h, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(h.grad).all()


def test_asloss_pulls_and_pushes():
    # One gradient step on AS must shrink same-class distances relative to different-class ones.
    torch.manual_seed(1)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    h = torch.randn(6, 4, requires_grad=True)
    loss = ASLoss(lambda_scope=0.0)
    before = loss.terms(h, y)
    loss(h, y).backward()
    with torch.no_grad():
        after = loss.terms(h - 0.5 * h.grad, y)
    assert after[0] < before[0] and after[1] > before[1]


def test_multilayer_weights_and_logs():
    torch.manual_seed(2)
    y = torch.tensor([0, 1, 0, 1])
    feats = {"a": torch.randn(4, 3), "b": torch.randn(4, 5)}
    ml = MultiLayerASLoss({"a": 0.5, "b": 2.0}, distance="cosine")
    total, logs = ml(feats, y)
    single = ASLoss(distance="cosine")
    torch.testing.assert_close(total, 0.5 * single(feats["a"], y) + 2.0 * single(feats["b"], y))
    assert set(logs) == {"a", "b"} and set(logs["a"]) == {"agg", "sep", "scope", "as"}


@pytest.mark.parametrize("bad", [torch.randn(4), torch.randn(2, 3, 4)])
def test_shape_errors(bad):
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        ASLoss()(bad, torch.zeros(bad.shape[0], dtype=torch.long))


def test_unknown_distance():
    with pytest.raises(ValueError, match="unknown distance"):
        ASLoss(distance="manhattan")


def test_smooth_l1_reference_is_torch_smooth_l1():
    a, b = torch.randn(9), torch.randn(9)
    torch.testing.assert_close(pair_distance("smooth_l1", a, b), F.smooth_l1_loss(a, b, beta=1.0))
