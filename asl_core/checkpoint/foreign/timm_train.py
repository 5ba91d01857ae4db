"""Checkpoints written by timm's ``train.py`` (``model_best.pth.tar``, ``checkpoint-*.pth.tar``):
``{"state_dict", "state_dict_ema"?, "arch", "args": argparse.Namespace, "epoch", "version", ...}``.

Read with ``torch.load(weights_only=True)`` plus ``argparse.Namespace`` (asl_core.checkpoint.files.
read_pickled); the architecture, class count, input channels, model arguments and preprocessing
come from ``args``."""

from __future__ import annotations

import argparse
from typing import Any

from asl_core.checkpoint.foreign.model import ForeignModel
from asl_core.checkpoint.foreign.state_dict import extract_state_dict
from asl_core.checkpoint.recipe import recipe_from_timm
from asl_core.errors import CheckpointError


def is_timm_train(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and (
        isinstance(obj.get("args"), argparse.Namespace) or (isinstance(obj.get("arch"), str) and "version" in obj))


def read_timm_train(obj: dict[str, Any], use_ema: bool | None = None) -> ForeignModel:
    args = vars(obj["args"]) if isinstance(obj.get("args"), argparse.Namespace) else {}
    name = args.get("model") or obj.get("arch")
    if not isinstance(name, str) or not name:
        raise CheckpointError("timm checkpoint without an architecture name (args.model / arch)")
    has_ema = isinstance(obj.get("state_dict_ema"), dict)
    ema = has_ema and use_ema is not False
    state = extract_state_dict(obj["state_dict_ema"] if ema else obj["state_dict"])
    notes = []
    if has_ema:
        notes.append("weights: the EMA average (state_dict_ema); choose the raw weights with --weights raw"
                     if ema else "weights: the raw ones (state_dict); the file also holds an EMA (state_dict_ema)")
    kwargs = args.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError("timm checkpoint: args.model_kwargs is not a dict")
    data_cfg = {k: args.get(k) for k in ("input_size", "img_size", "crop_pct", "interpolation", "mean", "std")}
    recipe = recipe_from_timm({k: v for k, v in data_cfg.items() if v is not None})
    in_chans = args.get("in_chans")
    num_classes = args.get("num_classes")
    epoch = obj.get("epoch")
    return ForeignModel(
        format="timm train.py checkpoint" + (f" (epoch {epoch})" if isinstance(epoch, int) else ""), state=state,
        arch=f"timm/{name}", arch_kwargs=dict(kwargs),
        num_classes=int(num_classes) if isinstance(num_classes, int) and not isinstance(num_classes, bool) else None,
        in_channels=int(in_chans) if isinstance(in_chans, int) and not isinstance(in_chans, bool) else recipe.channels,
        recipe=recipe, notes=tuple(notes), has_ema=has_ema)
