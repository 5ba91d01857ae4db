"""Foreign models as researchers bring them, for the tests and the browser checks: timm models
saved by timm's own ``CheckpointSaver`` (what its train.py uses), a timm hub folder written by
``timm.models.save_for_hf``, and a ``torch.export`` archive of a custom module with a residual
block and named submodules. Tiny variants (timm's ``test_*`` models) at 32 px keep them fast."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

TIMM_MODELS = {"convnext": "test_convnext", "efficientnet": "test_efficientnet", "vit": "test_vit"}


def timm_train_checkpoint(out: Path, name: str, num_classes: int = 10, img_size: int = 32, *, ema: bool = True,
                          in_chans: int = 3, seed: int = 0) -> Path:
    """``model_best.pth.tar`` as timm's train.py writes it (``CheckpointSaver``: state_dict,
    state_dict_ema, arch, args as an argparse.Namespace, optimizer, epoch, version, metric)."""
    import timm
    from timm.utils import CheckpointSaver, ModelEmaV3

    torch.manual_seed(seed)
    kwargs = {"img_size": img_size} if "vit" in name else {}
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    args = argparse.Namespace(model=name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, input_size=None,
                              mean=None, std=None, crop_pct=None, interpolation="", model_kwargs=kwargs, lr=0.1,
                              epochs=1, batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        saver = CheckpointSaver(model, optimizer, args=args, model_ema=ModelEmaV3(model) if ema else None,
                                checkpoint_dir=tmp, recovery_dir=tmp, max_history=1)
        saver.save_checkpoint(0, metric=0.5)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "model_best.pth.tar", out)
    return out


def timm_hub_folder(out: Path, name: str = "test_convnext", num_classes: int = 10, img_size: int = 32, *,
                    safetensors: bool = True, seed: int = 0) -> Path:
    """A timm hub folder (config.json + model.safetensors or pytorch_model.bin) by ``save_for_hf``."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    save_for_hf(model, str(out), model_config={"label_names": [f"digit {i}" for i in range(num_classes)]},
                data_config={"input_size": (3, img_size, img_size), "crop_pct": 1.0},
                safe_serialization=True if safetensors else False)
    return Path(out)


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(folder).iterdir()):
            z.write(f, f"{Path(folder).name}/{f.name}")
    return out


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class CustomNet(nn.Module):
    """A user's own architecture: ``stem``, ``neck`` (two residual blocks), ``head``."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.neck = nn.Sequential(Residual(width), Residual(width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.neck(self.stem(x))).flatten(1))


def export_archive(out: Path, in_channels: int = 1, side: int = 8, num_classes: int = 10, seed: int = 0) -> Path:
    """``torch.export.save`` of :class:`CustomNet` with a dynamic batch dimension."""
    torch.manual_seed(seed)
    model = CustomNet(in_channels, num_classes).eval()
    program = torch.export.export(model, (torch.randn(2, in_channels, side, side),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(out))
    return Path(out)
