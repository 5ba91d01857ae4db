"""The streaming data layer must not move the committed numbers: the same seed gives bit-identical
data splits and weights on the CPU as the code before it (the controls experiment's tables rely on it).

The digests below were computed with the pre-streaming code (commit 02aa13b: in-memory splits,
hand-indexed batches), one CPU thread, on this project's pinned torch build."""

from __future__ import annotations

import hashlib

import pytest
import torch

from asl_core.checkpoint import LoadedCheckpoint
from asl_core.data import build_splits, get_spec
from asl_core.training import TrainConfig, train


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _weights(model) -> str:
    sd = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SPLITS = {
    "digits": ("427f02eb5eaf4bb1", "beec19a0d488bcfa", "6cdff0e94ab9f1b5"),
    "digits-hard": ("8d6056b23912cc22", "099ec7b7474611bc", "283893a0b38716ba"),
    "mnist-lt": ("31e9e43a7646a5b1", "13b0a7671b38c52d", "81d0958453e977d8"),
}


@pytest.mark.parametrize("preset", sorted(SPLITS))
def test_preset_splits_are_unchanged(preset):
    s = build_splits(get_spec(preset))
    got = tuple(_digest((sp.x, sp.y, sp.index)) for sp in (s.train, s.val, s.test))
    assert got == SPLITS[preset]


def test_mnist_lt_baseline_weights_are_unchanged(one_thread):
    result = train(TrainConfig(arch="mnist_cnn", epochs=2, seed=0, device="cpu"), get_spec("mnist-lt"), progress=False)
    assert _weights(result.model) == "39dc88d04c1858f9"


def test_balanced_sampler_and_teachers_are_unchanged(one_thread):
    r = train(TrainConfig(epochs=2, seed=3, sampler="balanced", device="cpu"), get_spec("digits-hard"), progress=False)
    assert _weights(r.model) == "0895f0d46e129db3"
    spec = get_spec("digits")
    base = train(TrainConfig(epochs=1, seed=1, device="cpu"), spec, progress=False)
    teacher = LoadedCheckpoint(model=base.model, meta=base.meta)
    kd = train(TrainConfig(method="kd", epochs=1, seed=2, device="cpu"), spec, teacher=teacher, progress=False)
    assert _weights(kd.model) == "c34d19b3b62481ae"
    clonal = train(TrainConfig(method="clonal", epochs=1, seed=2, device="cpu", teacher_mode="fixed"), spec,
                   teacher=teacher, progress=False)
    assert _weights(clonal.model) == "c329198049d17f17"
