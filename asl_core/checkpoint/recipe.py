"""The model's input recipe: resize the shorter side, keep the centre crop (channels, mean and std
are ``CheckpointMeta.input_shape``/``mean``/``std``/``channel_repeat``).

:func:`apply_recipe` is the one place resize and crop happen. :func:`install_recipe` attaches it to
a model as a forward pre-hook, so every inference path (evaluation, extraction, Compare) feeds the
model what it was trained on without knowing about it; a data layer that already resized to the
recipe's size is left alone (the function is idempotent). Bilinear/bicubic resizing and cropping
are linear and commute with the per-channel normalisation, so applying them after normalising
gives the same input as before it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def apply_recipe(x: torch.Tensor, resize: int = 0, crop: int = 0, interpolation: str = "bilinear") -> torch.Tensor:
    """``[B, C, H, W]``: the shorter side resized to ``resize`` (aspect kept), then the centre
    ``crop`` x ``crop``. 0 skips a step; a batch already at the size passes through unchanged."""
    if resize and min(x.shape[-2:]) != resize:
        h, w = x.shape[-2:]
        scale = resize / min(h, w)
        size = (max(resize, round(h * scale)), max(resize, round(w * scale)))
        mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": scale < 1}
        x = F.interpolate(x, size=size, mode=mode, **kwargs)
    if crop and tuple(x.shape[-2:]) != (crop, crop):
        h, w = x.shape[-2:]
        if h < crop or w < crop:
            x = F.interpolate(x, size=(max(h, crop), max(w, crop)), mode="bilinear", align_corners=False)
            h, w = x.shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[..., top:top + crop, left:left + crop]
    return x


def install_recipe(model: nn.Module, resize: int = 0, crop: int = 0, interpolation: str = "bilinear") -> nn.Module:
    """Apply the recipe to the model's input on every forward (a pre-hook; none when both are 0)."""
    if resize or crop:
        def hook(_module, args):
            if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
                return (apply_recipe(args[0], resize, crop, interpolation), *args[1:])
            return None

        model.register_forward_pre_hook(hook)
    return model


@dataclass(frozen=True)
class Recipe:
    """What a foreign file says about its input; ``None`` where it says nothing."""

    size: int | None = None  # the side the model takes (after crop)
    resize: int = 0
    crop: int = 0
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None

    @property
    def stated(self) -> bool:
        return self.mean is not None or self.size is not None


def _floats(v: Any, n: int | None = None) -> tuple[float, ...] | None:
    if isinstance(v, (list, tuple)) and v and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
        out = tuple(float(a) for a in v)
        if all(math.isfinite(a) for a in out) and (n is None or len(out) == n) and len(out) in (1, 3):
            return out
    return None


def recipe_from_timm(cfg: dict[str, Any]) -> Recipe:
    """From timm's data config (``pretrained_cfg`` of config.json, or train.py's args):
    ``input_size`` (C, H, W) or ``img_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``.
    timm's eval transform: resize the shorter side to ``size / crop_pct``, centre-crop ``size``."""
    if not isinstance(cfg, dict):
        return Recipe()
    size = channels = None
    shape = cfg.get("input_size") or cfg.get("test_input_size")
    if isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
        channels, size = int(shape[0]), int(shape[-1])
    elif isinstance(cfg.get("img_size"), int):
        size = int(cfg["img_size"])
    if size is not None and not 8 <= size <= 1024:
        size = None
    crop_pct = cfg.get("crop_pct")
    crop_pct = float(crop_pct) if isinstance(crop_pct, (int, float)) and 0.3 <= crop_pct <= 1.0 else 1.0
    interp = cfg.get("interpolation")
    interp = interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear"
    resize = int(math.floor(size / crop_pct)) if size else 0
    return Recipe(size=size, resize=resize, crop=size or 0, interpolation=interp,
                  mean=_floats(cfg.get("mean")), std=_floats(cfg.get("std")), channels=channels)
