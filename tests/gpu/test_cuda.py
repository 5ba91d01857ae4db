"""The CUDA paths of extraction and training, which no CPU run executes: autocast (bf16/fp16)
against fp32, channels_last, pinned host memory, a real out-of-memory fallback, training on the GPU
and cuML's projections. Every test is marked ``cuda`` and skips without a GPU (see conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint, load_checkpoint, save_checkpoint
from asl_core.data import Split, get_spec
from asl_core.engine.features import extract_features
from asl_core.models import build_model
from asl_core.engine.options import InferenceOptions

pytestmark = pytest.mark.cuda

LAYERS = ["layer3", "avgpool"]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-12))


@pytest.fixture(scope="module")
def resnet():
    """An untrained ResNet-18 (eval-mode BatchNorm) on 3x64x64 inputs, as a checkpoint object."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=3, small_input=False)
    meta = CheckpointMeta(arch="resnet18", num_classes=10, class_names=tuple(str(i) for i in range(10)),
                          input_shape=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return LoadedCheckpoint(model=model, meta=meta)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    n = 96
    return Split(x=torch.rand(n, 3, 64, 64, generator=g), y=torch.arange(n) % 10, index=torch.arange(n))


@pytest.fixture(scope="module")
def fp32(resnet, images):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return extract_features(resnet, images, LAYERS, InferenceOptions(device="cuda", batch_size=32))


def test_cuda_fp32_matches_the_cpu(resnet, images, fp32):
    cpu = extract_features(resnet, images, LAYERS, InferenceOptions(device="cpu", batch_size=32))
    assert fp32.device.startswith("cuda")
    for name in LAYERS:
        assert rel_err(fp32.layers[name], cpu.layers[name]) < 1e-4, name
    assert rel_err(fp32.logits, cpu.logits) < 1e-4


@pytest.mark.parametrize("amp,tolerance", [("bf16", 3e-2), ("fp16", 5e-3)])
def test_autocast_extraction_is_close_to_fp32(resnet, images, fp32, amp, tolerance):
    half = extract_features(resnet, images, LAYERS, InferenceOptions(device="cuda", batch_size=32, amp=amp))
    for name in LAYERS:
        assert half.layers[name].dtype == np.float32  # results are float32 whatever the compute dtype
        assert rel_err(half.layers[name], fp32.layers[name]) < tolerance, (amp, name)
    assert rel_err(half.logits, fp32.logits) < tolerance


def test_channels_last_gives_the_same_features(resnet, images, fp32):
    cl = extract_features(resnet, images, LAYERS, InferenceOptions(device="cuda", batch_size=32, channels_last=True))
    for name in LAYERS:
        assert rel_err(cl.layers[name], fp32.layers[name]) < 1e-4, name
    assert next(resnet.model.parameters()).device.type == "cpu", "the model goes home afterwards"
    assert resnet.model.conv1.weight.is_contiguous(), "and in its own memory format"


def test_inputs_and_outputs_go_through_pinned_memory(resnet, images, monkeypatch):
    pinned = []
    original = torch.Tensor.pin_memory

    def counting(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        pinned.append(out.is_pinned())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", counting)
    feats = extract_features(resnet, images, LAYERS, InferenceOptions(device="cuda", batch_size=32))
    assert len(pinned) == 3 and all(pinned)  # one pinned copy per input batch
    assert len(feats) == len(images)


def test_a_real_out_of_memory_halves_the_batch(resnet):
    """Cap this process at 1.5 GiB of GPU memory, then ask for a batch of 1024 images at 224 px:
    ResNet-18's activations need several GiB, so CUDA really runs out, and the loop halves."""
    n = 1024
    big = Split(x=torch.rand(n, 3, 224, 224), y=torch.arange(n) % 10, index=torch.arange(n))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * 2**30 / total), 0)
    try:
        feats = extract_features(resnet, big, ["avgpool"], InferenceOptions(device="cuda", batch_size=n))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    assert feats.oom_retries >= 1 and feats.batch_size < n
    assert all("out of memory" in note for note in feats.notes)
    reference = extract_features(resnet, Split(x=big.x[:64], y=big.y[:64], index=big.index[:64]), ["avgpool"],
                                 InferenceOptions(device="cuda", batch_size=64))
    assert rel_err(feats.layers["avgpool"][:64], reference.layers["avgpool"]) < 1e-3


def test_training_on_the_gpu_saves_a_checkpoint_that_loads(tmp_path):
    from asl_core.training import TrainConfig, train

    spec = get_spec("digits-hard")
    result = train(TrainConfig(method="asloss", epochs=2, device="cuda", sampler="balanced"), spec, progress=False)
    path = save_checkpoint(result.model, result.meta, tmp_path / "gpu-asloss")
    ckpt = load_checkpoint(path)
    assert ckpt.meta.metrics["test"]["accuracy"] > 0.1
    assert next(ckpt.model.parameters()).device.type == "cpu"


def test_cuml_projects_on_the_gpu():
    pytest.importorskip("cuml", reason="cuML is not installed (bench/gpu_check.sh installs it unless GPU_CHECK_CUML=0)")
    from asl_core.engine.projection import ProjectionConfig, project

    rng = np.random.default_rng(0)
    labels = np.arange(3000) % 5
    X = (rng.normal(size=(3000, 32)) + 3 * labels[:, None]).astype(np.float32)
    for method in ("umap", "tsne"):
        proj = project(X, labels, ProjectionConfig(method=method))
        assert proj.backend == "cuml", method
        assert proj.coords.shape == (3000, 2) and np.isfinite(proj.coords).all()
        assert proj.trustworthiness > 0.8, (method, proj.trustworthiness)
