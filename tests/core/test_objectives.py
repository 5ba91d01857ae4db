"""Objectives: adding a method is one subclass plus one registry entry; the loop, the CLI, the
checkpoint format and the experiment pick it up from the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asl_core import objectives
from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.errors import UserError
from asl_core.objectives import Batch, LossOutput, Objective, get_objective, method_names, register_objective
from asl_core.training import TrainConfig, train
from asl_core.training.cli import build_parser


@pytest.fixture
def focal_method():
    """A toy focal-loss method, registered for one test."""

    class FocalObjective(Objective):
        name = "focal"
        params = {"focal_gamma": 2.0}

        def compute(self, batch: Batch) -> LossOutput:
            logp = F.log_softmax(batch.logits, dim=1).gather(1, batch.labels[:, None]).squeeze(1)
            loss = (-(1 - logp.exp()) ** self.hyperparams["focal_gamma"] * logp).mean()
            return LossOutput(loss, {"focal": float(loss.detach())})

    register_objective(FocalObjective)
    yield FocalObjective
    del objectives.OBJECTIVES["focal"]


def test_builtin_registry():
    assert method_names() == ("baseline", "asloss", "clonal", "kd", "ce-tuned", "conf-penalty", "logit-adjusted",
                              "asloss+la", "clonal+la", "asloss-scope-only", "asloss-no-scope", "clonal-no-neg")
    assert {m for m in method_names() if get_objective(m).needs_teacher} == {"clonal", "kd", "clonal+la", "clonal-no-neg"}


def test_a_new_method_trains_saves_and_loads(focal_method, tiny_spec, tmp_path):
    spec = tiny_spec
    config = TrainConfig(method="focal", epochs=2, method_params={"focal_gamma": 1.0}, device="cpu")
    result = train(config, spec, progress=False, name="focal")
    history = result.meta.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert all("train_focal" in row and row["train_focal"] > 0 for row in history)
    assert result.meta.method == "focal" and result.meta.hyperparams["focal_gamma"] == 1.0
    path = save_checkpoint(result.model, result.meta, tmp_path / "focal")
    assert load_checkpoint(path).meta.method == "focal"   # checkpoint validation reads the registry
    assert "focal" in build_parser().format_help()        # and so does the CLI


def test_unknown_method_and_hyperparameters_are_user_errors(focal_method):
    with pytest.raises(UserError, match="unknown method"):
        TrainConfig(method="nope")
    with pytest.raises(UserError, match="no hyperparameters focal_beta"):
        TrainConfig(method="focal", method_params={"focal_beta": 1})


def test_objective_terms_match_the_losses():
    torch.manual_seed(0)
    logits, teacher, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    clonal = get_objective("clonal")(fp_alpha=1.0, fp_beta=1.0)
    out = clonal(Batch(logits, y, teacher_logits=teacher))
    from asl_core.losses import FocusingPickingLoss, kd_loss

    assert torch.allclose(out.total, FocusingPickingLoss(alpha=1.0, beta=1.0)(logits, teacher, y))
    assert out.stats["confusing_set_sizes"].shape == (8,)
    kd = get_objective("kd")(kd_temperature=3.0, kd_weight=0.7)(Batch(logits, y, teacher_logits=teacher))
    assert torch.allclose(kd.total, kd_loss(logits, teacher, y, 3.0, 0.7))
    with pytest.raises(ValueError, match="needs the teacher"):
        clonal(Batch(logits, y))
