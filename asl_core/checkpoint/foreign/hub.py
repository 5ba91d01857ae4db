"""timm's Hugging Face hub folder: ``config.json`` (``architecture``, ``num_classes``,
``model_args``, ``pretrained_cfg`` with input size, mean and std, ``label_names``) next to
``model.safetensors`` or ``pytorch_model.bin``; as a folder or a ``.zip`` of it (read member by
member through :class:`~asl_core.checkpoint.files.SafeZip`: no bombs, no paths outside it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asl_core.checkpoint.files import MAX_CHECKPOINT_BYTES, SafeZip, read_pickled
from asl_core.checkpoint.foreign.model import ForeignModel
from asl_core.checkpoint.foreign.state_dict import extract_state_dict
from asl_core.checkpoint.recipe import recipe_from_timm
from asl_core.errors import CheckpointError, UserError

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MAX_CONFIG_BYTES = 1 << 20
MAX_CLASSES = 100_000


def parse_config(raw: bytes) -> dict[str, Any]:
    """config.json checked: a known timm architecture, a sane class count, allowed model arguments."""
    from asl_core.models.timm_models import check_arch_kwargs, is_timm_model

    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"refused: config.json is {len(raw) / 2**20:.1f} MiB (at most 1 MiB)")
    try:
        cfg = json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise CheckpointError("config.json is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise CheckpointError("config.json is not an object")
    arch = cfg.get("architecture")
    if not isinstance(arch, str) or not arch:
        raise CheckpointError("config.json names no architecture (timm's hub format has \"architecture\")")
    if not is_timm_model(f"timm/{arch}"):
        raise CheckpointError(f"config.json names architecture {arch[:60]!r}, which timm does not have")
    n = cfg.get("num_classes")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= MAX_CLASSES):
        raise CheckpointError(f"config.json: num_classes {str(n)[:20]} is not 2..{MAX_CLASSES:,}")
    args = cfg.get("model_args") or {}
    if isinstance(args, dict):  # the class count and channels are read as such, not passed twice
        args = dict(args)
        for key, bound in (("num_classes", MAX_CLASSES), ("in_chans", 3)):
            v = args.pop(key, None)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= bound):
                raise CheckpointError(f"config.json: model_args.{key} {str(v)[:20]} is not 1..{bound:,}")
            if v is not None:
                cfg.setdefault(key, v)
    try:
        cfg["model_args"] = check_arch_kwargs(args)
    except UserError as exc:
        raise CheckpointError(f"config.json: {exc}") from None
    if not isinstance(cfg.get("pretrained_cfg", {}), dict):
        raise CheckpointError("config.json: pretrained_cfg is not an object")
    return cfg


def _weights(name: str, raw: bytes) -> dict:
    if name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(raw)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{name} is not a readable safetensors file: {str(exc)[:120]}") from None
    return extract_state_dict(read_pickled(data=raw))


def _from_parts(cfg_raw: bytes, weights_name: str, weights_raw: bytes, where: str) -> ForeignModel:
    cfg = parse_config(cfg_raw)
    pretrained = cfg.get("pretrained_cfg") or {}
    recipe = recipe_from_timm(pretrained)
    labels = cfg.get("label_names") or pretrained.get("label_names")
    names = tuple(str(x)[:60] for x in labels) if isinstance(labels, list) and len(labels) == cfg.get("num_classes") else ()
    in_chans = cfg.get("in_chans") if isinstance(cfg.get("in_chans"), int) else recipe.channels
    return ForeignModel(format=f"timm hub folder ({where}: config.json + {weights_name})",
                        state=_weights(weights_name, weights_raw), arch=f"timm/{cfg['architecture']}",
                        arch_kwargs=cfg["model_args"], num_classes=cfg.get("num_classes"), in_channels=in_chans,
                        recipe=recipe, class_names=names)


def read_hub_folder(folder: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> ForeignModel:
    folder = Path(folder)
    config = folder / CONFIG
    if not config.is_file():
        raise CheckpointError(f"{folder.name}/ has no config.json (timm's hub format)")
    weights = next((folder / w for w in WEIGHTS if (folder / w).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder.name}/ has config.json but no {' or '.join(WEIGHTS)}")
    size = weights.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{weights.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
    if config.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError("refused: config.json is over 1 MiB")
    return _from_parts(config.read_bytes(), weights.name, weights.read_bytes(), "folder")


def read_hub_zip(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> ForeignModel:
    with SafeZip(path, max_bytes) as z:
        names = z.names()
        configs = [n for n in names if n.rsplit("/", 1)[-1] == CONFIG and n.count("/") <= 1]
        if len(configs) != 1:
            raise CheckpointError(f"the .zip holds {len(configs)} config.json files at its top (expected timm's hub "
                                  "folder: config.json and model.safetensors or pytorch_model.bin)")
        base = configs[0][: -len(CONFIG)]
        weights = next((base + w for w in WEIGHTS if base + w in names), None)
        if weights is None:
            raise CheckpointError(f"the .zip has config.json but no {' or '.join(WEIGHTS)} beside it")
        return _from_parts(z.read(configs[0]), weights.rsplit("/", 1)[-1], z.read(weights), ".zip")
