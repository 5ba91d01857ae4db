"""The model registry: architectures built by name.

Architectures are built by name so that a checkpoint's metadata (``arch`` plus
``arch_kwargs``) is enough to rebuild the network before loading its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from asl_core.errors import UserError


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 (or any small) images. Layers worth looking at:
    ``block1`` [B,32,H,W], ``block2`` [B,64,H/2,W/2], ``block3`` [B,128,H/2,W/2],
    ``embedding`` [B,64] (the penultimate representation) and ``fc`` [B,C] (logits)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, embedding_dim: int = 64):
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.block3 = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(4 * width, embedding_dim), nn.ReLU())
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.embedding(self.pool(x)))


class MnistCNN(nn.Module):
    """A small CNN for 28x28 digits (~26k parameters). ``embedding`` is the linear, pre-activation
    penultimate layer (where the ASLoss paper puts its loss); ``block3.0`` the last convolution's
    output before its BatchNorm; ``fc`` the logits."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, embedding_dim: int = 64):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False), nn.BatchNorm2d(4 * width),
                                    nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.embedding = nn.Linear(4 * width, embedding_dim)
        self.act = nn.ReLU()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block3(self.block2(self.block1(x))))
        return self.fc(self.act(self.embedding(self.flatten(x))))


def _adapt_resnet(model: nn.Module, in_channels: int, small_input: bool) -> nn.Module:
    if small_input:
        # CIFAR-style stem: a 3x3 stride-1 conv and no max-pool keep small images from
        # collapsing to 1x1 before the first residual stage.
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, in_channels: int = 3, small_input: bool = False) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if name.startswith("resnet"):
            return _adapt_resnet(model, in_channels, small_input)
        if name == "mobilenet_v2":
            first = model.features[0][0]
            stride = 1 if small_input else 2
            if in_channels != 3 or small_input:
                model.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, stride=stride, padding=1, bias=False)
        return model

    return build


def _digits_builder(num_classes: int, in_channels: int = 1, small_input: bool = True) -> nn.Module:
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels)


def _digits_small_builder(num_classes: int, in_channels: int = 1, small_input: bool = True) -> nn.Module:
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels, width=16, embedding_dim=32)


def _mnist_builder(num_classes: int, in_channels: int = 1, small_input: bool = True) -> nn.Module:
    return MnistCNN(num_classes=num_classes, in_channels=in_channels)


@dataclass(frozen=True)
class ArchInfo:
    builder: Callable[..., nn.Module]
    embedding_layer: str  # the penultimate layer: the default for ASLoss and for pictures
    description: str
    first_conv: str  # state-dict key of the stem convolution (tells the input channels)
    # the ASLoss paper's placement: the linear (pre-activation) embedding and one earlier layer
    paper_layers: tuple[str, ...] = ()
    default_input: tuple[int, int] = (3, 224)  # (channels, side) for weights that do not say


ARCHITECTURES: dict[str, ArchInfo] = {
    "digits_cnn": ArchInfo(_digits_builder, "embedding", "small CNN for 8x8 digits (~100k parameters)", "block1.0.weight",
                           ("embedding.1", "block3.0"), (1, 8)),
    "digits_cnn_small": ArchInfo(_digits_small_builder, "embedding", "half-width CNN, a smaller clonal/student", "block1.0.weight",
                                 ("embedding.1", "block3.0"), (1, 8)),
    "mnist_cnn": ArchInfo(_mnist_builder, "embedding", "small CNN for 28x28 digits (~26k parameters)", "block1.0.weight",
                          ("embedding", "block3.0"), (1, 28)),
    "resnet18": ArchInfo(_torchvision_builder("resnet18"), "avgpool", "torchvision ResNet-18", "conv1.weight"),
    "resnet34": ArchInfo(_torchvision_builder("resnet34"), "avgpool", "torchvision ResNet-34", "conv1.weight"),
    "resnet50": ArchInfo(_torchvision_builder("resnet50"), "avgpool", "torchvision ResNet-50", "conv1.weight"),
    "mobilenet_v2": ArchInfo(_torchvision_builder("mobilenet_v2"), "features", "torchvision MobileNetV2", "features.0.0.weight"),
}


EXPORT_ARCH = "torch.export"  # a graph carried in the checkpoint itself (asl_core.checkpoint.foreign.export)


def is_known_arch(arch: str) -> bool:
    """A registry name, a ``timm/<name>`` timm knows, or a graph carried in the file."""
    from asl_core.models.timm_models import is_timm, is_timm_model

    return arch in ARCHITECTURES or arch == EXPORT_ARCH or (is_timm(arch) and is_timm_model(arch))


def build_model(arch: str, num_classes: int, in_channels: int = 3, small_input: bool = False,
                arch_kwargs: dict | None = None) -> nn.Module:
    """Build an untrained model by registry name, or any timm model as ``timm/<name>``
    (``arch_kwargs``: its checked constructor arguments, e.g. ``img_size``)."""
    from asl_core.models.timm_models import build_timm, is_timm

    if not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"class count must be an integer >= 2, got {num_classes!r}")
    if in_channels not in (1, 3):
        raise UserError(f"input channels must be 1 or 3, got {in_channels!r}")
    if is_timm(arch):
        return build_timm(arch, num_classes, in_channels, arch_kwargs)
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)} or timm/<name>")
    return ARCHITECTURES[arch].builder(num_classes=num_classes, in_channels=in_channels, small_input=small_input)


def paper_layers(arch: str) -> tuple[str, ...]:
    """Where the ASLoss paper puts its loss on ``arch`` (pre-activation embedding, one earlier layer);
    the embedding layer alone where the architecture names none."""
    info = ARCHITECTURES[arch]
    return info.paper_layers or (info.embedding_layer,)


def embedding_layer(arch: str, layers: list[str] | None = None) -> str:
    """The registry's embedding layer; for any other model (timm, an exported graph) the top-level
    layer before its last one, i.e. the features its classifier reads, given its ``layers``
    (:func:`~asl_core.models.list_layers`)."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch].embedding_layer
    top = [name for name in (layers or []) if "." not in name and name != "logits"]
    return top[-2] if len(top) >= 2 else (top[-1] if top else "")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
