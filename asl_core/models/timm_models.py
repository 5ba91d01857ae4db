"""timm architectures by name: ``timm/<name>`` (any of timm's 1,000+ models), built with random
weights (``pretrained=False``: nothing is ever downloaded; the weights come from the user's file).

timm is imported only when a ``timm/`` name is used (its import takes seconds)."""

from __future__ import annotations

import functools
import math
from typing import Any

from torch import nn

from asl_core.errors import UserError

PREFIX = "timm/"
MAX_PARAMETERS = 400_000_000  # 1.6 GB of float32: over the 1 GiB checkpoint limit anyway

# Constructor arguments a file may set (timm's config.json ``model_args``, train.py's ``model_kwargs``).
# Anything else is refused: kwargs reach the model's constructor, so only plain sizes and flags pass.
_INT_ARGS = {"img_size": (8, 1024), "patch_size": (1, 64), "embed_dim": (8, 4096), "depth": (1, 64),
             "num_heads": (1, 64), "reg_tokens": (0, 16), "num_features": (8, 8192)}
_LIST_ARGS = {"depths": (1, 64), "dims": (8, 4096), "embed_dims": (8, 4096), "img_size": (8, 1024)}
_FLOAT_ARGS = {"drop_rate": (0.0, 1.0), "drop_path_rate": (0.0, 1.0), "mlp_ratio": (0.25, 16.0),
               "channel_multiplier": (0.1, 8.0), "depth_multiplier": (0.1, 8.0), "width_multiplier": (0.1, 8.0)}
_BOOL_ARGS = {"class_token", "no_embed_class", "dynamic_img_size", "qkv_bias", "conv_mlp", "head_hidden_size_none"}
_STR_ARGS = {"global_pool": {"", "avg", "max", "avgmax", "token", "map"}}


def is_timm(arch: str) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


@functools.cache
def timm_names() -> tuple[str, ...]:
    """Every architecture timm registers (no weights; the registry is part of the package)."""
    import timm

    return tuple(timm.list_models())


def is_timm_model(arch: str) -> bool:
    if not is_timm(arch):
        return False
    import timm

    return bool(timm.is_model(arch[len(PREFIX):]))


def check_arch_kwargs(kwargs: Any) -> dict[str, Any]:
    """Constructor arguments from a file, checked against an allow-list with sane ranges; a
    one-line :class:`UserError` for anything else (an unknown key, an absurd size)."""
    if kwargs in (None, {}):
        return {}
    if not isinstance(kwargs, dict):
        raise UserError(f"model arguments must be an object, got {type(kwargs).__name__}")
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        def bad(why: str) -> UserError:
            return UserError(f"model argument {key}={str(value)[:40]!r} refused: {why}")
        if key in _INT_ARGS and isinstance(value, int) and not isinstance(value, bool):
            lo, hi = _INT_ARGS[key]
            if not lo <= value <= hi:
                raise bad(f"outside {lo}..{hi}")
        elif key in _LIST_ARGS and isinstance(value, (list, tuple)):
            lo, hi = _LIST_ARGS[key]
            if not 1 <= len(value) <= 8 or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
                                                   for v in value):
                raise bad(f"expected 1 to 8 integers in {lo}..{hi}")
            value = list(value)
        elif key in _FLOAT_ARGS and isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = _FLOAT_ARGS[key]
            if not (math.isfinite(value) and lo <= value <= hi):
                raise bad(f"outside {lo}..{hi}")
        elif key in _BOOL_ARGS and isinstance(value, bool):
            pass
        elif key in _STR_ARGS and value in _STR_ARGS[key]:
            pass
        else:
            raise bad("not one of the plain size/flag arguments ASL Lens passes to a timm model")
        out[key] = value
    return out


def build_timm(arch: str, num_classes: int, in_channels: int = 3, arch_kwargs: dict | None = None) -> nn.Module:
    """A randomly initialised timm model; its size is checked on the meta device first, so an
    absurd configuration is refused before any memory is allocated."""
    import timm
    import torch

    name = arch[len(PREFIX):]
    if not timm.is_model(name):
        raise UserError(f"unknown timm architecture {name!r} (timm {timm.__version__} has {len(timm_names())})")
    kwargs = check_arch_kwargs(arch_kwargs)
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError, IndexError) as exc:
        raise UserError(f"timm cannot build {name} with {kwargs or 'its defaults'}: {str(exc).splitlines()[0][:160]}") from None
    n = sum(p.numel() for p in probe.parameters())
    if n > MAX_PARAMETERS:
        raise UserError(f"timm {name} with {kwargs} has {n:,} parameters, over the {MAX_PARAMETERS:,} limit")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


def default_recipe(arch: str) -> dict[str, Any]:
    """timm's own preprocessing for the architecture (input size, crop, interpolation, mean, std)
    from its registry, where it states one."""
    import timm

    cfg = timm.get_pretrained_cfg(arch[len(PREFIX):])
    return cfg.to_dict() if cfg is not None else {}
