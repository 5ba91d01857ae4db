"""Our checkpoint format: one ``.safetensors`` file holding the weights, plus our JSON metadata
under the header key ``asl_lens`` (architecture, classes, input recipe, dataset spec, method,
layers, history, metrics, versions, creation time and a content hash), and for a model imported
from a ``torch.export`` archive its graph (JSON) under ``asl_lens_graph``. One file means one
atomic rename on save and one thing to upload.

Loading never executes code from a file: safetensors holds only tensors, foreign files go
through :func:`asl_core.checkpoint.foreign.read_foreign` (``torch.load(weights_only=True)``,
safetensors, JSON), and an exported graph is checked op by op before it is rebuilt."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asl_core.checkpoint.files import (MAX_CHECKPOINT_BYTES, atomic_write_bytes, check_size, file_kind, read_safetensors,
                                       read_safetensors_header)
from asl_core.checkpoint.meta import FORMAT, META_KEY, CheckpointMeta
from asl_core.checkpoint.recipe import install_recipe
from asl_core.errors import CheckpointError, NotOurCheckpointError, UserError
from asl_core.models import EXPORT_ARCH, build_model

CHECKPOINT_SUFFIX = ".safetensors"
GRAPH_KEY = "asl_lens_graph"


@dataclass
class LoadedCheckpoint:
    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None
    graph: str = ""  # the exported program's JSON, for arch == "torch.export"

    @property
    def content_hash(self) -> str:
        return self.meta.content_hash



# --------------------------------------------------------------------------- hashing


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def content_hash(state_dict: dict[str, torch.Tensor], meta: CheckpointMeta, graph: str = "") -> str:
    """sha256 over the weights and the fields that change what the model computes."""
    h = hashlib.sha256()
    ident = {"arch": meta.arch, "num_classes": meta.num_classes, "small_input": meta.small_input,
             "input_shape": list(meta.input_shape), "mean": list(meta.mean), "std": list(meta.std)}
    # each only when set, so that every earlier checkpoint keeps its hash
    if meta.channel_repeat != 1:
        ident["channel_repeat"] = meta.channel_repeat
    if meta.arch_kwargs:
        ident["arch_kwargs"] = meta.arch_kwargs
    if meta.resize or meta.crop:
        ident.update(resize=meta.resize, crop=meta.crop, interpolation=meta.interpolation)
    if graph:
        ident["graph"] = hashlib.sha256(graph.encode()).hexdigest()
    h.update(json.dumps(ident, sort_keys=True).encode())
    for k in sorted(state_dict):
        t = state_dict[k]
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def versions() -> dict[str, str]:
    import torchvision

    from asl_core import __version__

    return {"asl_lens": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()



# --------------------------------------------------------------------------- save


def checkpoint_path(out: str | Path) -> Path:
    """``checkpoints/NAME`` -> ``checkpoints/NAME.safetensors``."""
    out = Path(out)
    return out if out.suffix == CHECKPOINT_SUFFIX else out.with_name(out.name + CHECKPOINT_SUFFIX)


def serialize(model_or_state: nn.Module | dict[str, torch.Tensor], meta: CheckpointMeta,
              graph: str = "") -> tuple[bytes, CheckpointMeta]:
    from safetensors.torch import save

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # clone: safetensors refuses tensors that share storage
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = dataclasses.replace(meta, content_hash=content_hash(tensors, meta, graph), versions=meta.versions or versions(),
                               created=meta.created or now_iso())
    payload = json.dumps(meta.to_dict(), allow_nan=False, default=_json_default)
    header = {META_KEY: payload, "format": "pt", **({GRAPH_KEY: graph} if graph else {})}
    return save(tensors, metadata=header), meta


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_checkpoint(model_or_state: nn.Module | dict[str, torch.Tensor], meta: CheckpointMeta, out: str | Path,
                    graph: str = "") -> Path:
    """Write a checkpoint atomically; returns its path (``.safetensors`` appended if absent)."""
    path = checkpoint_path(out)
    data, _ = serialize(model_or_state, meta, graph)
    atomic_write_bytes(path, data)
    return path



# --------------------------------------------------------------------------- load


def _meta_from_header(metadata: dict[str, str]) -> CheckpointMeta:
    if META_KEY not in metadata:
        raise NotOurCheckpointError("not an ASL Lens checkpoint (no metadata); say which architecture it is to load its weights")
    try:
        raw = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint metadata is not valid JSON: {exc}") from None
    except RecursionError:  # found by tests/reliability/test_fuzz.py: "[[[[...]]]]" nested 100,000 deep
        raise CheckpointError("checkpoint metadata is nested too deeply to be ours") from None
    meta = CheckpointMeta.from_dict(raw)
    if meta.format != FORMAT:
        raise CheckpointError(f"unsupported checkpoint format {meta.format!r} (this version reads {FORMAT})")
    return meta


def read_metadata(path: str | Path) -> CheckpointMeta:
    """Our metadata from the safetensors header alone (no weights read), e.g. for listing a
    library. Raises :class:`NotOurCheckpointError` for a safetensors file without it and
    :class:`CheckpointError` for anything unreadable."""
    return _meta_from_header(read_safetensors_header(Path(path)))


def check_finite(state: dict[str, torch.Tensor]) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"weight {k!r} contains NaN or Inf values")


def describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A one-line account of the keys and shapes that do not fit ``model``, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []

    def few(xs: list[str]) -> str:
        return ", ".join(xs[:4]) + (f" (+{len(xs) - 4} more)" if len(xs) > 4 else "")

    if shapes:
        parts.append(f"shape mismatch (file vs model): {few(shapes)}")
    if missing:
        parts.append(f"missing keys: {few(missing)}")
    if extra:
        parts.append(f"unexpected keys: {few(extra)}")
    return "; ".join(parts) or None


def build_and_load(meta: CheckpointMeta, state: dict[str, torch.Tensor], graph: str = "") -> nn.Module:
    """The model ``meta`` names with ``state`` loaded strictly, in eval mode, with its input
    recipe installed. An exported graph (``torch.export``) is rebuilt from ``graph``."""
    check_finite(state)
    if meta.arch == EXPORT_ARCH:
        from asl_core.checkpoint.foreign.export import module_from_graph

        model = module_from_graph(graph, state)
    else:
        try:
            model = build_model(meta.arch, meta.num_classes, in_channels=meta.in_channels, small_input=meta.small_input,
                                arch_kwargs=meta.arch_kwargs)
        except UserError as exc:
            raise CheckpointError(str(exc)) from None
        mismatch = describe_mismatch(model, state)
        if mismatch:
            raise CheckpointError(f"weights do not fit {meta.arch} with {meta.num_classes} classes: {mismatch}")
        model.load_state_dict(state, strict=True)
    install_recipe(model, meta.resize, meta.crop, meta.interpolation)
    return model.eval()


def load_checkpoint(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    max_bytes: int = MAX_CHECKPOINT_BYTES,
    *,
    use_ema: bool | None = None,
) -> LoadedCheckpoint:
    """Load one of our checkpoints, or someone else's model: a file that states its architecture
    (timm's train.py checkpoints, a timm hub folder or its ``.zip``, a ``torch.export`` ``.pt2``
    archive) or weights whose architecture ``arch`` names (``num_classes`` inferred from the
    classifier's weight when not given). ``use_ema``: for timm checkpoints holding both, the EMA
    weights (default) or the raw ones.

    Returns the model in eval mode on ``device`` with its metadata. Every problem with the
    file is a :class:`CheckpointError` with a one-line reason; nothing in the file is run.
    """
    path = Path(path)
    if not path.is_dir():
        check_size(path, max_bytes)
    kind = "folder" if path.is_dir() else file_kind(path)
    if kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        if META_KEY in metadata:
            return _load_ours(path, tensors, metadata, arch, num_classes, device)
    from asl_core.checkpoint.foreign import foreign_checkpoint, read_foreign

    found = read_foreign(path, max_bytes=max_bytes, use_ema=use_ema)
    ck = foreign_checkpoint(found, arch=arch, num_classes=num_classes, name=path.stem)
    ck.model.to(device)
    return dataclasses.replace(ck, path=path)


def _load_ours(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str], arch: str | None,
               num_classes: int | None, device: str | torch.device) -> LoadedCheckpoint:
    meta = _meta_from_header(metadata)
    if arch is not None and arch != meta.arch:
        raise CheckpointError(f"checkpoint is a {meta.arch}, not a {arch}")
    if num_classes is not None and num_classes != meta.num_classes:
        raise CheckpointError(f"checkpoint has {meta.num_classes} classes, not {num_classes}")
    graph = metadata.get(GRAPH_KEY, "")
    model = build_and_load(meta, state, graph)
    actual = content_hash(state, meta, graph)
    if meta.content_hash and actual != meta.content_hash:
        raise CheckpointError("content hash mismatch: the file was modified or corrupted after it was written")
    meta = dataclasses.replace(meta, content_hash=actual)
    return LoadedCheckpoint(model=model.to(device), meta=meta, path=path, graph=graph)


def list_checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file() and not p.name.startswith("."))
