"""The controls and ablations of METHODS.md section 5, each against its formula written out by
hand, and how the experiment ties them together (teachers, inherited tau, ablations)."""

from __future__ import annotations

import json
import dataclasses
import math

import pytest
import torch

from asl_core.experiment import run as experiment
from asl_core.experiment.search import search, search_order
from asl_core.objectives import Batch, get_objective
from asl_core.training import TrainConfig, TrainResult, train

C = 4


@pytest.fixture
def batch():
    torch.manual_seed(0)
    logits = torch.randn(6, C, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 0])
    teacher = torch.randn(6, C)
    h = torch.randn(6, 5, requires_grad=True)
    return logits, labels, teacher, h


COUNTS = torch.tensor([50.0, 20.0, 5.0, 1.0])


def ce_soft(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-sum_j target_j log softmax(z)_j, batch mean, by hand."""
    rows = []
    for zi, ti in zip(z, target):
        lse = math.log(sum(math.exp(float(v)) for v in zi))
        rows.append(-sum(float(t) * (float(v) - lse) for v, t in zip(zi, ti)))
    return torch.tensor(sum(rows) / len(rows))


def onehot(y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, C).float()


def neg_entropy(z: torch.Tensor) -> float:
    p = torch.softmax(z.detach(), 1)
    return float((p * p.log()).sum(1).mean())


def test_ce_tuned_is_label_smoothed_cross_entropy(batch):
    z, y, _, _ = batch
    out = get_objective("ce-tuned")(label_smoothing=0.2)(Batch(z, y))
    expected = ce_soft(z.detach(), 0.8 * onehot(y) + 0.2 / C)
    assert torch.allclose(out.total.detach(), expected, atol=1e-5)


def test_conf_penalty_is_ce_plus_beta_times_negative_entropy(batch):
    z, y, _, _ = batch
    out = get_objective("conf-penalty")(cp_beta=3.0)(Batch(z, y))
    expected = float(ce_soft(z.detach(), onehot(y))) + 3.0 * neg_entropy(z)
    assert out.total.item() == pytest.approx(expected, abs=1e-5)
    assert out.terms["r_neg"] == pytest.approx(neg_entropy(z), abs=1e-6)
    # minimising the penalty raises the entropy of p: a small step down the objective's gradient, with
    # the penalty dominating the cross-entropy
    logits = z.detach().clone().requires_grad_(True)
    get_objective("conf-penalty")(cp_beta=100.0)(Batch(logits, y)).total.backward()
    entropy = lambda t: float(-(torch.softmax(t, 1) * torch.log_softmax(t, 1)).sum(1).mean())  # noqa: E731
    assert entropy(logits.detach() - 1e-3 * logits.grad) > entropy(logits.detach())


def test_logit_adjusted_trains_on_z_plus_tau_log_prior(batch):
    z, y, _, _ = batch
    obj = get_objective("logit-adjusted")(la_tau=1.5)
    with pytest.raises(ValueError, match="prior"):
        obj(Batch(z, y))
    obj.prepare(COUNTS)
    prior = COUNTS / COUNTS.sum()
    expected = ce_soft(z.detach() + 1.5 * prior.log(), onehot(y))
    assert torch.allclose(obj(Batch(z, y)).total.detach(), expected, atol=1e-5)
    # a class absent from training counts as one sample: the loss stays finite
    obj.prepare(torch.tensor([10.0, 0.0, 3.0, 1.0]))
    assert torch.isfinite(obj(Batch(z, y)).total)


def test_asloss_plus_la_adds_asloss_to_the_adjusted_ce(batch):
    z, y, _, h = batch
    params = dict(layers={"emb": 0.5}, distance="euclidean", radius=2.0, lambda_agg=1.0, lambda_sep=0.7, lambda_scope=0.1)
    obj = get_objective("asloss+la")(la_tau=1.0, **params)
    obj.prepare(COUNTS)
    la = get_objective("logit-adjusted")(la_tau=1.0)
    la.prepare(COUNTS)
    plain = get_objective("asloss")(**params)
    b = Batch(z, y, {"emb": h})
    ce = torch.nn.functional.cross_entropy(z, y)
    expected = la(b).total + (plain(b).total - ce)
    assert torch.allclose(obj(b).total, expected, atol=1e-6)
    assert "ce_la" in obj(b).terms


def asloss_terms_by_hand(h: torch.Tensor, y: torch.Tensor, r: float) -> tuple[float, float, float]:
    """Euclidean L_agg, L_sep over ordered pairs i != j, and L_scope (METHODS.md section 1)."""
    same, diff = [], []
    for i in range(len(y)):
        for j in range(len(y)):
            if i != j:
                d = float(torch.linalg.vector_norm(h[i] - h[j]))
                (same if y[i] == y[j] else diff).append(d)
    scope = sum((float(torch.linalg.vector_norm(hi)) - r) ** 2 for hi in h) / len(h)
    return sum(same) / len(same), sum(diff) / len(diff), scope


def test_asloss_ablations_remove_exactly_their_terms(batch):
    z, y, _, h = batch
    hd = h.detach()
    agg, sep, scope = asloss_terms_by_hand(hd, y, 2.0)
    ce = float(ce_soft(z.detach(), onehot(y)))
    b = Batch(z, y, {"emb": h})
    common = dict(layers={"emb": 0.5}, distance="euclidean", as_weight=0.5)
    scope_only = get_objective("asloss-scope-only")(radius=2.0, lambda_scope=0.1, **common)
    assert scope_only.hyperparams["lambda_agg"] == scope_only.hyperparams["lambda_sep"] == 0.0
    assert scope_only(b).total.item() == pytest.approx(ce + 0.5 * 0.1 * scope, abs=1e-4)
    no_scope = get_objective("asloss-no-scope")(lambda_agg=1.0, lambda_sep=0.7, **common)
    assert no_scope.hyperparams["lambda_scope"] == 0.0
    assert no_scope(b).total.item() == pytest.approx(ce + 0.5 * (agg - 0.7 * sep), abs=1e-4)
    with pytest.raises(ValueError, match="unknown"):
        get_objective("asloss-scope-only")(lambda_agg=1.0, **common)


def fp_by_hand(z, t, y, alpha, beta, offset=None, eps=0.1, temp=2.0):
    """METHODS.md section 2 written out: L_cls on z + (p - q) (+ offset), R_pick over S, R_neg."""
    z = z.detach()
    p, q = torch.softmax(z, 1), torch.softmax(t, 1)
    shifted = z + (p - q) + (offset if offset is not None else 0.0)
    l_cls = float(ce_soft(shifted, (1 - eps) * onehot(y) + eps / C))
    s = torch.softmax(t / temp, 1) > 1 / C
    s[torch.arange(len(y)), y] = True
    m = s.float() / s.float().sum(1, keepdim=True)
    r_pick = float(-(m * torch.log_softmax(z, 1)).sum(1).mean())
    return l_cls + alpha * r_pick + beta * neg_entropy(z)


def test_clonal_plus_la_adjusts_only_the_cross_entropy(batch):
    z, y, t, _ = batch
    obj = get_objective("clonal+la")(fp_alpha=0.3, fp_beta=9.0, la_tau=1.0)
    obj.prepare(COUNTS)
    offset = (COUNTS / COUNTS.sum()).log()
    out = obj(Batch(z, y, teacher_logits=t))
    assert out.total.item() == pytest.approx(fp_by_hand(z, t, y, 0.3, 9.0, offset), abs=1e-4)
    assert get_objective("clonal+la").teacher_method == "logit-adjusted"
    plain = get_objective("clonal")(fp_alpha=0.3, fp_beta=9.0)(Batch(z, y, teacher_logits=t))
    assert plain.total.item() == pytest.approx(fp_by_hand(z, t, y, 0.3, 9.0), abs=1e-4)


def test_clonal_no_neg_drops_the_confidence_penalty(batch):
    z, y, t, _ = batch
    obj = get_objective("clonal-no-neg")(fp_alpha=0.3)
    assert obj.hyperparams["fp_beta"] == 0.0
    assert obj(Batch(z, y, teacher_logits=t)).total.item() == pytest.approx(fp_by_hand(z, t, y, 0.3, 0.0), abs=1e-4)


def test_logit_adjusted_training_records_tau_and_predicts_with_z(tiny_spec):
    from asl_core.data import build_splits, normalize

    splits = build_splits(tiny_spec)
    res = train(TrainConfig(method="logit-adjusted", epochs=1, device="cpu"), tiny_spec, splits=splits, progress=False)
    assert res.meta.hyperparams["la_tau"] == 1.0 and "train_ce_la" in res.meta.history[0]
    with torch.inference_mode():  # the checkpoint's own logits z predict: no prior is added at test time
        z = res.model.eval()(normalize(splits.test.x, res.meta.mean, res.meta.std))
    assert float((z.argmax(1) == splits.test.y).float().mean()) == pytest.approx(res.meta.metrics["test"]["accuracy"])


def test_clonal_plus_la_learns_from_the_logit_adjusted_row_and_ablations_keep_their_parents_choice():
    assert search_order(["clonal+la", "asloss+la", "logit-adjusted", "clonal"])[0] == "logit-adjusted"
    chosen = {"asloss": {"as_weight": 0.3, "radius": 0.37}, "clonal": {"fp_alpha": 1.0, "fp_beta": 27.0},
              "logit-adjusted": {"la_tau": 2.0}, "asloss+la": {"la_tau": 2.0, "as_weight": 0.1}}
    rows = ["baseline", "logit-adjusted", "asloss", "clonal", "asloss+la", "asloss-scope-only", "asloss-no-scope",
            "clonal-no-neg"]
    configs = experiment.method_configs(rows, TrainConfig(arch="mnist_cnn"), None, chosen)
    hp = {r: c.hyperparams() for r, c in configs.items()}
    assert hp["asloss-scope-only"]["as_weight"] == 0.3 and hp["asloss-scope-only"]["radius"] == 0.37
    assert hp["asloss-scope-only"]["lambda_agg"] == 0.0 == hp["asloss-scope-only"]["lambda_sep"]
    assert hp["asloss-no-scope"]["as_weight"] == 0.3 and hp["asloss-no-scope"]["lambda_scope"] == 0.0
    assert hp["clonal-no-neg"]["fp_alpha"] == 1.0 and hp["clonal-no-neg"]["fp_beta"] == 0.0
    assert hp["asloss+la"]["la_tau"] == 2.0


def test_search_hands_the_tuned_tau_on_and_teaches_clonal_plus_la_with_the_la_model(tiny_spec):
    from asl_core.data import build_splits
    from tests.core.test_experiment import _META

    teachers = []

    def fake_train(config, spec, teacher=None, splits=None, progress=False, **_):
        hp = config.objective_params()
        if teacher is not None:
            teachers.append((config.method, teacher.meta.method))
        val = {"logit-adjusted": 1.0 - abs(hp.get("la_tau", 0) - 2.0)}.get(config.method, 0.5) + config.seed * 1e-3
        meta = dataclasses.replace(_META, method=config.method, metrics={"val": {"macro_f1": val}})
        return TrainResult(model=torch.nn.Linear(1, 1), meta=meta)

    grids = {"logit-adjusted": {"la_tau": [1.0, 2.0, 3.0]}, "clonal+la": {"fp_alpha": [0.3, 1.0]}}
    record = search(["baseline", "clonal+la", "logit-adjusted"], TrainConfig(epochs=1), tiny_spec, build_splits(tiny_spec), seeds=[5],
                    grids=grids, train_fn=fake_train, extend=False)
    assert record.chosen()["logit-adjusted"] == {"la_tau": 2.0}
    assert record.chosen()["clonal+la"] == {"la_tau": 2.0, "fp_alpha": 0.3}
    (cl,) = [m for m in record.methods if m.method == "clonal+la"]
    assert cl.inherited == {"la_tau": 2.0} and cl.base_configs == 2
    assert set(teachers) == {("clonal+la", "logit-adjusted")}


def test_a_run_survives_the_resume_cache_and_a_search_renders_without_test_seeds(tmp_path):
    from asl_core.experiment.search import ConfigScore, MethodSearch, SearchRecord
    from asl_core.experiment.tables import RunResult, search_markdown

    run = RunResult("asloss", 3, 0.5, 0.4, 0.1, float("nan"), (0.2, 0.8), 0.45, 7, correct=(True, False, True),
                    terms={"ce": 1.0, "embedding.scope": 0.2})
    back = RunResult.from_dict(json.loads(json.dumps(run.to_dict())))
    assert back.correct == run.correct and back.terms == run.terms and math.isnan(back.silhouette)
    assert back.to_dict() == run.to_dict()
    record = SearchRecord(seeds=(100,), rule="r", baseline_val_macro_f1=(0.6,), extension_rounds=1, methods=(
        MethodSearch("logit-adjusted", {"la_tau": [1.0, 2.0]}, (ConfigScore({"la_tau": 1.0}, (0.8,)),
                                                               ConfigScore({"la_tau": 2.0}, (0.9,)),
                                                               ConfigScore({"la_tau": 6.0}, (0.95,))),
                     {"la_tau": 6.0}, extended={"la_tau": [6.0]}, base_configs=2, capped={"la_tau": 6.0}),))
    text = search_markdown(title="t", command="c", setup=[], search=record, search_note="n", missing="PARTIAL")
    assert "PARTIAL" in text and "| logit-adjusted | 3 | la_tau=6.0 | 0.9500 | +0.3500 |" in text
    assert "la_tau = 6.0 (cap: 1 extension round)" in text and "chosen" in text
