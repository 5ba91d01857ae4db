"""The checkpoint format, and safe loading of ours and other people's checkpoints.

Ours is one ``.safetensors`` file: the weights, plus our JSON metadata under the header
key ``asl_lens`` (architecture, classes, normalisation, dataset spec, method, layers,
history, metrics, versions, creation time and a content hash). One file means one atomic
rename on save and one thing to upload.

Loading never executes code from a file: safetensors holds only tensors, and foreign
``.pt``/``.pth``/``.ckpt`` files go through ``torch.load(weights_only=True)``, whose
unpickler refuses every global outside PyTorch's tensor allow-list.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import pickle
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asl_core.errors import CheckpointError, NotOurCheckpointError, UserError
from asl_core.models import ARCHITECTURES, build_model
from asl_core.objectives import method_names

FORMAT = "asl-lens-checkpoint/1"
META_KEY = "asl_lens"
CHECKPOINT_SUFFIX = ".safetensors"
FOREIGN_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB; ResNet-50 is ~100 MB

FOREIGN_METHOD = "foreign"  # someone else's weights; every other method is a registered objective


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a later tool needs to rebuild, evaluate and explain a model."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str = "baseline"
    name: str = ""
    small_input: bool = False
    # 3: the data is grayscale and its one channel is repeated to feed a 3-channel model (foreign
    # RGB weights on a grayscale dataset); ``input_shape``, ``mean`` and ``std`` are the model's (3)
    channel_repeat: int = 1
    dataset: dict[str, Any] | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    parents: dict[str, str] = field(default_factory=dict)
    # mechanism figures of the training run (e.g. ClonalNet's mean |S|, the teacher's train
    # accuracy, same-class pairs per class) and loud warnings when a mechanism did not fire
    diagnostics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    content_hash: str = ""
    source: str = "asl-lens"
    format: str = FORMAT

    @property
    def in_channels(self) -> int:
        """Channels the model takes."""
        return int(self.input_shape[0])

    @property
    def data_channels(self) -> int:
        """Channels of the data the model is evaluated on (1 when the channel is repeated)."""
        return self.in_channels // self.channel_repeat if self.channel_repeat in (1, 3) else self.in_channels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CheckpointMeta:
        if not isinstance(data, dict):
            raise CheckpointError("checkpoint metadata is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise CheckpointError(f"checkpoint metadata is missing fields: {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        _check_field_types(kwargs)
        try:
            meta = cls(**kwargs)
            meta = dataclasses.replace(
                meta,
                class_names=tuple(str(c) for c in meta.class_names),
                input_shape=tuple(int(v) for v in meta.input_shape),
                mean=tuple(float(v) for v in meta.mean),
                std=tuple(float(v) for v in meta.std),
                num_classes=int(meta.num_classes),
                channel_repeat=int(meta.channel_repeat),
                warnings=tuple(str(w) for w in meta.warnings),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"checkpoint metadata has a field of the wrong type: {exc}") from None
        meta.validate()
        return meta

    def validate(self) -> None:
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"unknown architecture {self.arch!r}")
        if self.num_classes < 2:
            problems.append("class count must be >= 2")
        if len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.input_shape) != 3 or self.input_shape[0] not in (1, 3) or min(self.input_shape) < 1:
            problems.append(f"input shape {self.input_shape} is not [C, H, W] with C 1 or 3")
        elif len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            problems.append("normalisation mean/std do not match the channel count")
        if self.channel_repeat not in (1, 3):
            problems.append(f"channel repeat must be 1 or 3, got {self.channel_repeat!r}")
        elif self.channel_repeat == 3 and self.input_shape[:1] != (3,):
            problems.append("a repeated grayscale channel needs a 3-channel model")
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std, default=1) <= 0:
            problems.append("normalisation has a non-finite mean or a non-positive std")
        if self.method not in (*method_names(), FOREIGN_METHOD):
            problems.append(f"unknown method {self.method!r}")
        if problems:
            raise CheckpointError("invalid checkpoint metadata: " + "; ".join(problems))


_NUMBER = (int, float)
_SEQUENCE = (list, tuple)
# The JSON shape of each field (found by tests/reliability/test_fuzz.py: an "arch" of [] or a
# "metrics" of "x" reached code that expected a string or a dict and raised TypeError).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "arch": (str,), "method": (str,), "name": (str,), "created": (str,), "content_hash": (str,), "source": (str,),
    "format": (str,), "num_classes": (int,), "small_input": (bool,), "dataset": (dict, type(None)),
    "hyperparams": (dict,), "layers": (dict,), "history": (list,), "metrics": (dict,), "best_epoch": (int, type(None)),
    "parents": (dict,), "diagnostics": (dict,), "versions": (dict,), "class_names": _SEQUENCE, "input_shape": _SEQUENCE,
    "mean": _SEQUENCE, "std": _SEQUENCE, "warnings": _SEQUENCE,
}


def _check_field_types(data: dict[str, Any]) -> None:
    """Refuse metadata whose fields have the wrong JSON shape, before anything uses them."""
    for name, value in data.items():
        kinds = _FIELD_TYPES.get(name)
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise CheckpointError(f"checkpoint metadata field {name!r} is a {type(value).__name__}, "
                                  f"expected {' or '.join(k.__name__ for k in kinds)}")
    for name in ("input_shape", "mean", "std"):
        if name in data and not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in data[name]):
            raise CheckpointError(f"checkpoint metadata field {name!r} must hold numbers")
    bad_split = next((k for k, v in data.get("metrics", {}).items() if not isinstance(v, dict)), None)
    if bad_split is not None:
        raise CheckpointError(f"checkpoint metadata: metrics[{bad_split!r}] is not an object")
    if not all(isinstance(row, dict) for row in data.get("history", [])):
        raise CheckpointError("checkpoint metadata: history holds something other than objects")
    if not all(isinstance(w, _NUMBER) and not isinstance(w, bool) for w in data.get("layers", {}).values()):
        raise CheckpointError("checkpoint metadata: layer weights must be numbers")


@dataclass
class LoadedCheckpoint:
    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None

    @property
    def content_hash(self) -> str:
        return self.meta.content_hash


# --------------------------------------------------------------------------- hashing


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def content_hash(state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> str:
    """sha256 over the weights and the fields that change what the model computes."""
    h = hashlib.sha256()
    ident = {"arch": meta.arch, "num_classes": meta.num_classes, "small_input": meta.small_input,
             "input_shape": list(meta.input_shape), "mean": list(meta.mean), "std": list(meta.std)}
    if meta.channel_repeat != 1:  # only when set, so that every earlier checkpoint keeps its hash
        ident["channel_repeat"] = meta.channel_repeat
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


# --------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.
    A crash at any point leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- save


def checkpoint_path(out: str | Path) -> Path:
    """``checkpoints/NAME`` -> ``checkpoints/NAME.safetensors``."""
    out = Path(out)
    return out if out.suffix == CHECKPOINT_SUFFIX else out.with_name(out.name + CHECKPOINT_SUFFIX)


def serialize(model_or_state: nn.Module | dict[str, torch.Tensor], meta: CheckpointMeta) -> tuple[bytes, CheckpointMeta]:
    from safetensors.torch import save

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # clone: safetensors refuses tensors that share storage
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = dataclasses.replace(meta, content_hash=content_hash(tensors, meta), versions=meta.versions or versions(),
                               created=meta.created or now_iso())
    payload = json.dumps(meta.to_dict(), allow_nan=False, default=_json_default)
    return save(tensors, metadata={META_KEY: payload, "format": "pt"}), meta


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_checkpoint(model_or_state: nn.Module | dict[str, torch.Tensor], meta: CheckpointMeta, out: str | Path) -> Path:
    """Write a checkpoint atomically; returns its path (``.safetensors`` appended if absent)."""
    path = checkpoint_path(out)
    data, _ = serialize(model_or_state, meta)
    atomic_write_bytes(path, data)
    return path


# --------------------------------------------------------------------------- load


def _sniff(head: bytes) -> str:
    if head[:2] == b"PK":
        return "torch-zip"
    # safetensors first: its little-endian header length can start with 0x80, a pickle's first byte
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata through safetensors' own reader (it validates the header:
    size, offsets, dtypes and shapes) -- the one reader of the format in the project."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a readable safetensors file (truncated or corrupted?): {str(exc)[:200]}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError("safetensors metadata is not an object")
    return tensors, metadata


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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a readable safetensors file (truncated or corrupted?): {str(exc)[:200]}") from None
    return _meta_from_header(metadata)


def _read_pickled(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "global" in ln), first[0] if first else "")
        raise CheckpointError(
            "refused to load: the file contains Python objects other than tensors, which could run code "
            f"when unpickled ({detail.strip()[:160]})"
        ) from None
    # AssertionError, OverflowError, RecursionError: torch's legacy reader on bytes found by
    # tests/reliability/test_fuzz.py (a flipped storage key, a huge count, deep nesting)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, AssertionError, OverflowError, RecursionError, MemoryError) as exc:
        raise CheckpointError(f"not a readable PyTorch checkpoint (truncated or corrupted?): {str(exc)[:200]}") from None


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """A plain state dict, a Lightning-style ``{"state_dict": ..., }`` with a ``model.``
    prefix, or a ``{"model": state_dict}`` / DataParallel ``module.`` prefixed dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("the file holds no state dict (expected a mapping of parameter names to tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj):
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:3]
        raise CheckpointError(f"the state dict has entries that are not tensors: {', '.join(bad)}")
    for prefix in ("model.", "module.", "net."):
        if all(str(k).startswith(prefix) for k in tensors):
            tensors = {str(k)[len(prefix) :]: v for k, v in tensors.items()}
    return {str(k): v for k, v in tensors.items()}


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


def _infer_in_channels(arch: str, state: dict[str, torch.Tensor]) -> int:
    """From the stem convolution; when it is absent or odd, the architecture's usual value
    (the key-by-key comparison then names what is wrong)."""
    stem = state.get(ARCHITECTURES[arch].first_conv)
    if stem is not None and stem.dim() == 4 and int(stem.shape[1]) in (1, 3):
        return int(stem.shape[1])
    return ARCHITECTURES[arch].default_input[0]


def _infer_num_classes(state: dict[str, torch.Tensor]) -> int | None:
    two_d = [v for v in state.values() if v.dim() == 2]
    return int(two_d[-1].shape[0]) if two_d else None


def foreign_meta(arch: str, num_classes: int, state: dict[str, torch.Tensor], name: str = "") -> CheckpointMeta:
    """Metadata for someone else's weights: what can be inferred, sensible defaults otherwise."""
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    in_ch = _infer_in_channels(arch, state)
    conv1 = state.get("conv1.weight")
    default_side = ARCHITECTURES[arch].default_input[1]
    small = bool(conv1 is not None and conv1.shape[-1] == 3) or default_side < 64
    size = default_side if default_side < 64 else (32 if small else 224)
    if in_ch == 3:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        mean, std = (0.5,) * in_ch, (0.25,) * in_ch
    return CheckpointMeta(
        arch=arch, num_classes=int(num_classes), class_names=tuple(str(i) for i in range(num_classes)),
        input_shape=(in_ch, size, size), mean=mean, std=std, method="foreign", name=name, small_input=small,
        source="foreign",
    )


def build_and_load(meta: CheckpointMeta, state: dict[str, torch.Tensor]) -> nn.Module:
    try:
        model = build_model(meta.arch, meta.num_classes, in_channels=meta.in_channels, small_input=meta.small_input)
    except UserError as exc:
        raise CheckpointError(str(exc)) from None
    mismatch = describe_mismatch(model, state)
    if mismatch:
        raise CheckpointError(f"weights do not fit {meta.arch} with {meta.num_classes} classes: {mismatch}")
    check_finite(state)
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_checkpoint_file(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> tuple[str, Any, dict[str, str]]:
    """Returns ``(kind, tensors_or_object, safetensors_metadata)`` after size and type checks."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"not a file: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"checkpoint is {size / 2**20:.2f} MiB, over the {max_bytes / 2**20:.2f} MiB limit")
    if size == 0:
        raise CheckpointError("checkpoint file is empty")
    with open(path, "rb") as f:
        head = f.read(16)
    kind = _sniff(head)
    if kind == "safetensors":
        tensors, metadata = _read_safetensors(path)
        return kind, tensors, metadata
    if kind in ("torch-zip", "pickle"):
        return kind, _read_pickled(path), {}
    raise CheckpointError("unrecognised file: not a safetensors file nor a PyTorch checkpoint")


def load_checkpoint(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> LoadedCheckpoint:
    """Load one of our checkpoints, or someone else's weights when told ``arch`` (and
    optionally ``num_classes``; inferred from the classifier's weight otherwise).

    Returns the model in eval mode on ``device`` with its metadata. Every problem with the
    file is a :class:`CheckpointError` with a one-line reason; nothing in the file is run.
    """
    path = Path(path)
    kind, obj, metadata = read_checkpoint_file(path, max_bytes)
    if kind == "safetensors" and META_KEY in metadata:
        meta = _meta_from_header(metadata)
        state = obj
        if arch is not None and arch != meta.arch:
            raise CheckpointError(f"checkpoint is a {meta.arch}, not a {arch}")
        if num_classes is not None and num_classes != meta.num_classes:
            raise CheckpointError(f"checkpoint has {meta.num_classes} classes, not {num_classes}")
        model = build_and_load(meta, state)
        actual = content_hash(state, meta)
        if meta.content_hash and actual != meta.content_hash:
            raise CheckpointError("content hash mismatch: the file was modified or corrupted after it was written")
        meta = dataclasses.replace(meta, content_hash=actual)
    else:
        state = obj if kind == "safetensors" else extract_state_dict(obj)
        if arch is None:
            raise NotOurCheckpointError(
                "this is not an ASL Lens checkpoint; say which architecture it is (arch=..., e.g. resnet18) to load its weights"
            )
        n = num_classes if num_classes is not None else _infer_num_classes(state)
        if n is None:
            raise CheckpointError("cannot infer the class count; pass num_classes")
        meta = foreign_meta(arch, n, state, name=path.stem)
        model = build_and_load(meta, state)
        meta = dataclasses.replace(meta, content_hash=content_hash(state, meta))
    return LoadedCheckpoint(model=model.to(device), meta=meta, path=path)


def list_checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file() and not p.name.startswith("."))
