"""Model registry and layer discovery."""

from __future__ import annotations

import pytest
import torch

from asl_core.errors import LayerError
from asl_core.models import ARCHITECTURES, LayerTap, build_model, embedding_layer, list_layers


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("in_channels,size,small", [(1, 8, True), (3, 32, False)])
def test_every_architecture_builds_and_runs(arch, in_channels, size, small):
    model = build_model(arch, 5, in_channels=in_channels, small_input=small).eval()
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 5)
    layers = list_layers(model)
    assert embedding_layer(arch) in layers
    with LayerTap(model, [embedding_layer(arch)]) as tap:
        model(torch.randn(2, in_channels, size, size))
    assert tap.outputs[embedding_layer(arch)].dim() == 2


def test_digits_layer_names():
    assert list_layers(build_model("digits_cnn", 10, in_channels=1)) == [
        "block1", "block1.0", "block1.1", "block2", "block2.0", "block2.1", "block2.3",
        "block3", "block3.0", "block3.1", "pool", "embedding", "embedding.1", "fc", "logits",
    ]


def test_unknown_layer_lists_valid_names():
    model = build_model("digits_cnn", 10, in_channels=1)
    with pytest.raises(ValueError, match="valid layers: block1.*embedding") as err:
        LayerTap(model, ["nope"])
    assert isinstance(err.value, LayerError)


def test_tap_is_safe_against_inplace_ops():
    model = build_model("resnet18", 3, in_channels=3).eval()
    with LayerTap(model, ["bn1", "layer1.0"]) as tap:
        model(torch.randn(2, 3, 32, 32))
    # bn1 is followed by an in-place ReLU: the kept output must still hold negatives
    assert float(tap.outputs["bn1"].min()) < 0
    assert not model._forward_hooks and not model.bn1._forward_hooks
