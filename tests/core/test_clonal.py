"""ClonalNet's focusing-picking loss, Hinton KD, and clonal/KD training against a frozen baseline.

The loss tests re-derive METHODS.md section 2 one sample at a time, in float64, and compare
values and autograd gradients with the vectorised loss in asl_core.losses.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asl_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.errors import UserError
from asl_core.losses import FocusingPickingLoss, kd_loss, kd_terms
from asl_core.models import count_parameters
from asl_core.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- reference


def reference_fp_terms(logits, teacher, labels, eps=0.1, temperature=2.0, detach_p=False):
    """METHODS.md section 2 written plainly, one sample at a time."""
    n, c = logits.shape
    l_cls_sum = r_pick_sum = r_neg_sum = 0.0
    for i in range(n):
        z = logits[i]
        t = teacher[i].detach()
        y = int(labels[i])
        p = torch.exp(z) / torch.exp(z).sum()
        q = torch.exp(t) / torch.exp(t).sum()
        u = z + ((p.detach() if detach_p else p) - q)
        log_softmax_u = u - torch.log(torch.exp(u).sum())
        l_cls = 0.0
        for j in range(c):
            target_j = (1.0 - eps) * (1.0 if j == y else 0.0) + eps / c
            l_cls = l_cls - target_j * log_softmax_u[j]
        q_soft = torch.exp(t / temperature) / torch.exp(t / temperature).sum()
        confusing = [j for j in range(c) if float(q_soft[j]) > 1.0 / c or j == y]
        log_p = torch.log(p)
        r_pick = 0.0
        for j in confusing:
            r_pick = r_pick - (1.0 / len(confusing)) * log_p[j]
        r_neg = 0.0
        for j in range(c):
            r_neg = r_neg + p[j] * log_p[j]
        l_cls_sum = l_cls_sum + l_cls
        r_pick_sum = r_pick_sum + r_pick
        r_neg_sum = r_neg_sum + r_neg
    return l_cls_sum / n, r_pick_sum / n, r_neg_sum / n


def random_batch(seed: int, n: int = 6, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    teacher = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, teacher, labels


# --------------------------------------------------------------------------- focusing-picking loss


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0)])
def test_fp_matches_per_sample_reference_values_and_gradients(seed, alpha, beta):
    logits, teacher, labels = random_batch(seed)
    loss_fn = FocusingPickingLoss(eps=0.1, temperature=2.0, alpha=alpha, beta=beta)

    z1 = logits.clone().requires_grad_(True)
    terms = loss_fn.terms(z1, teacher, labels)
    total = loss_fn(z1, teacher, labels)
    (g1,) = torch.autograd.grad(total, z1)

    z2 = logits.clone().requires_grad_(True)
    ref = reference_fp_terms(z2, teacher, labels)
    ref_total = ref[0] + alpha * ref[1] + beta * ref[2]
    (g2,) = torch.autograd.grad(ref_total, z2)

    for got, want in zip(terms, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(total, ref_total, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_fp_default_hyperparameters_follow_methods_md():
    loss_fn = FocusingPickingLoss()
    assert (loss_fn.eps, loss_fn.temperature, loss_fn.alpha, loss_fn.beta) == (0.1, 2.0, 1.0, 1.0)


def test_fp_no_gradient_reaches_teacher_logits():
    logits, teacher, labels = random_batch(3)
    z = logits.clone().requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    FocusingPickingLoss()(z, t, labels).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert t.grad is None or bool((t.grad == 0).all())


def test_fp_gradient_flows_through_p_inside_l_cls():
    logits, teacher, labels = random_batch(4)
    z1 = logits.clone().requires_grad_(True)
    l_cls, _, _ = FocusingPickingLoss().terms(z1, teacher, labels)
    (g_live,) = torch.autograd.grad(l_cls, z1)

    z2 = logits.clone().requires_grad_(True)
    l_cls_detached, _, _ = reference_fp_terms(z2, teacher, labels, detach_p=True)
    (g_detached,) = torch.autograd.grad(l_cls_detached, z2)

    torch.testing.assert_close(l_cls.detach(), l_cls_detached.detach())  # same value ...
    assert not torch.allclose(g_live, g_detached, rtol=1e-4, atol=1e-6)  # ... different gradient


def test_confusing_set_rule_on_hand_made_logits():
    # C = 4, so a class is "confusing" when softmax(t / 2)_j > 0.25.
    teacher = torch.tensor(
        [
            [4.0, 4.0, 0.0, 0.0],  # 0.44, 0.44, 0.06, 0.06 -> {0, 1}, plus the label 3
            [0.0, 0.0, 0.0, 0.0],  # exactly 0.25 each: not > 1/C -> only the label
            [4.0, 2.5, 0.0, 0.0],  # T = 2: 0.57, 0.27, ... -> {0, 1}; at T = 1 class 1 would be out (0.18)
            [2.0, 0.0, 0.0, 0.0],  # 0.48, 0.17, ... -> {0}, label 0 already in
        ]
    )
    labels = torch.tensor([3, 2, 0, 0])
    mask = FocusingPickingLoss(temperature=2.0).confusing_mask(teacher, labels)
    expected = torch.tensor(
        [
            [True, True, False, True],
            [False, False, True, False],
            [True, True, False, False],
            [True, False, False, False],
        ]
    )
    assert torch.equal(mask, expected)
    assert FocusingPickingLoss(temperature=1.0).confusing_mask(teacher, labels)[2].tolist() == [True, False, False, False]

    # R_pick puts 1/|S| on each confusing class: check it on logits with known log-probabilities.
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 4))
    _, r_pick, _ = FocusingPickingLoss().terms(logits, teacher, labels)
    lp = [math.log(v) for v in (0.1, 0.2, 0.3, 0.4)]
    want = (-(lp[0] + lp[1] + lp[3]) / 3 - lp[2] - (lp[0] + lp[1]) / 2 - lp[0]) / 4
    assert float(r_pick) == pytest.approx(want, rel=1e-6)


def test_fp_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        FocusingPickingLoss().terms(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


# --------------------------------------------------------------------------- KD


def test_kd_terms_match_hand_computation():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], dtype=torch.float64)
    teacher = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    temperature = 4.0

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    ce = kl = 0.0
    for z, t, y in zip(logits.tolist(), teacher.tolist(), labels.tolist()):
        ce += -math.log(softmax(z)[y])
        pt = softmax([x / temperature for x in t])
        ps = softmax([x / temperature for x in z])
        kl += sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
    ce, kd = ce / 2, temperature**2 * kl / 2

    got_ce, got_kd = kd_terms(logits, teacher, labels, temperature)
    assert float(got_ce) == pytest.approx(ce, rel=1e-12)
    assert float(got_kd) == pytest.approx(kd, rel=1e-12)
    assert float(kd_loss(logits, teacher, labels, temperature, weight=0.5)) == pytest.approx(ce + 0.5 * kd, rel=1e-12)


def test_kd_no_gradient_reaches_teacher_logits():
    logits, teacher, labels = random_batch(5)
    z = logits.clone().requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    kd_loss(z, t, labels).backward()
    assert z.grad is not None
    assert t.grad is None or bool((t.grad == 0).all())


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny():
    spec = get_spec("digits", samples_per_class=10, val_per_class=5, test_per_class=5)
    return spec, build_splits(spec)


@pytest.fixture(scope="module")
def baseline_file(tiny, tmp_path_factory):
    spec, splits = tiny
    result = train(TrainConfig(epochs=2, device="cpu"), spec, splits=splits, progress=False, name="base")
    return save_checkpoint(result.model, result.meta, tmp_path_factory.mktemp("ckpt") / "base")


@pytest.mark.parametrize("method", ["clonal", "kd"])
@pytest.mark.parametrize("arch", ["digits_cnn", "digits_cnn_small"])
def test_training_against_a_frozen_baseline(tiny, baseline_file, tmp_path, method, arch):
    spec, splits = tiny
    file_bytes = baseline_file.read_bytes()
    teacher = load_checkpoint(baseline_file)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}

    result = train(TrainConfig(method=method, arch=arch, epochs=2, device="cpu"), spec, teacher=teacher, splits=splits,
                   progress=False)

    after = teacher.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the baseline's weights or buffers changed"
    assert baseline_file.read_bytes() == file_bytes
    assert result.meta.parents["baseline"] == teacher.meta.content_hash != ""
    assert result.meta.method == method and result.meta.arch == arch
    logged = set(result.meta.history[-1])
    assert ({"train_fp_cls", "train_fp_pick", "train_fp_neg"} if method == "clonal" else {"train_ce", "train_kd"}) <= logged

    path = save_checkpoint(result.model, result.meta, tmp_path / method)
    loaded = load_checkpoint(path)
    assert loaded.meta.method == method
    assert loaded.meta.parents["baseline"] == teacher.meta.content_hash
    x = splits.test.x[:8]
    from asl_core.data import normalize

    with torch.inference_mode():
        xn = normalize(x, loaded.meta.mean, loaded.meta.std)
        assert torch.equal(loaded.model(xn), result.model.eval()(xn))
    if arch == "digits_cnn_small":
        assert count_parameters(loaded.model) < count_parameters(teacher.model)


def test_in_memory_baseline_records_the_hash_its_file_would_carry(tiny, tmp_path):
    spec, splits = tiny
    base = train(TrainConfig(epochs=1, device="cpu"), spec, splits=splits, progress=False)
    teacher = LoadedCheckpoint(model=base.model, meta=base.meta)
    assert teacher.meta.content_hash == ""
    clonal = train(TrainConfig(method="clonal", epochs=1, device="cpu"), spec, teacher=teacher, splits=splits, progress=False)
    saved = load_checkpoint(save_checkpoint(base.model, base.meta, tmp_path / "base"))
    assert clonal.meta.parents["baseline"] == saved.meta.content_hash


def test_clonal_needs_a_teacher(tiny):
    spec, splits = tiny
    with pytest.raises(UserError):
        train(TrainConfig(method="clonal", epochs=1, device="cpu"), spec, splits=splits, progress=False)


def test_cli_clonal_without_baseline_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "asl_core", "train", "--method", "clonal", "--out", str(tmp_path / "c"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--baseline" in lines[0]
    assert not (tmp_path / "c.safetensors").exists()


def test_cli_clonal_trains_on_the_baselines_data_unless_told_otherwise(tmp_path, capsys):
    from asl_core.training.cli import build_parser, data_args_given, main

    data = ["--dataset", "digits", "--samples-per-class", "10", "--val-per-class", "5", "--test-per-class", "5"]
    assert main(["--out", str(tmp_path / "base"), "--epochs", "2", "--quiet", *data]) == 0
    base = load_checkpoint(tmp_path / "base.safetensors")
    args = ["--method", "clonal", "--arch", "digits_cnn_small", "--baseline", str(tmp_path / "base.safetensors"),
            "--epochs", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "small")]) == 0
    small = load_checkpoint(tmp_path / "small.safetensors")
    assert small.meta.arch == "digits_cnn_small" and small.meta.method == "clonal"
    assert small.meta.dataset == base.meta.dataset
    assert small.meta.parents["baseline"] == base.meta.content_hash
    # a data flag, in either spelling, means the user's data, not the baseline's
    assert main([*args, "--out", str(tmp_path / "other"), "--samples-per-class=8", "--dataset=digits",
                 "--val-per-class", "5", "--test-per-class", "5"]) == 0
    assert load_checkpoint(tmp_path / "other.safetensors").meta.dataset["samples_per_class"] == 8
    assert "samples_per_class 8 (baseline 10)" in capsys.readouterr().err  # one line says the data differ
    parse = build_parser().parse_args
    assert data_args_given(parse(["--out", "x", "--noise=0.1"])) == ["--noise"]
    assert data_args_given(parse(["--out", "x", "--imbal", "5"])) == ["--imbalance"]  # an abbreviation counts
    assert not data_args_given(parse(["--out", "x", "--epochs", "2"]))
