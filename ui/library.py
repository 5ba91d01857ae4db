"""The checkpoint library: listing, cached loading, safe import of uploads, deletion.

Uploads are untrusted: they join the library only through
``asl_core.library.import_checkpoint`` (private temporary file, safe loaders, validation,
atomic save under a sanitised name that never replaces an existing one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from asl_core import library as core_library
from asl_core.demo import DEMO_COMPARISON
from asl_core.checkpoint import (CHECKPOINT_SUFFIX, CheckpointMeta, LoadedCheckpoint, list_checkpoints, load_checkpoint,
                                 read_metadata)
from asl_core.engine.analysis import splits_for
from asl_core.data import PRESETS, DatasetSpec, KnownDataset, Split, known_datasets
from asl_core.errors import CheckpointError, UserError

UPLOAD_SUFFIXES = core_library.ACCEPTED_SUFFIXES


def library_path(folder: Path, file_name: str) -> Path:
    """Resolve a library file name, refusing anything outside ``folder``."""
    path = (folder / file_name).resolve()
    if path.parent != folder.resolve() or path.suffix != CHECKPOINT_SUFFIX:
        raise UserError(f"{file_name!r} is not a checkpoint in the library")
    return path


# --------------------------------------------------------------------------- listing


def file_key(path: Path) -> tuple[str, float, int]:
    st_ = path.stat()
    return str(path), st_.st_mtime, st_.st_size


@st.cache_data(show_spinner=False, max_entries=512)
def _read_meta(path: str, mtime: float, size: int) -> CheckpointMeta | str:
    """Metadata from the safetensors header only (no weights read); a string on error."""
    try:
        return read_metadata(path)
    except CheckpointError as exc:
        return str(exc)
    except Exception as exc:  # a broken file in the folder must not break the page
        return f"unreadable: {exc.__class__.__name__}"


def read_meta(path: Path) -> CheckpointMeta | str:
    return _read_meta(*file_key(path))


def library(folder: Path) -> list[tuple[Path, CheckpointMeta | str]]:
    return [(p, read_meta(p)) for p in list_checkpoints(folder)]


def _metric(meta: CheckpointMeta, split: str, key: str) -> float | None:
    value = (meta.metrics or {}).get(split, {}).get(key)
    return round(float(value), 4) if isinstance(value, (int, float)) else None


def library_rows(entries: list[tuple[Path, CheckpointMeta | str]]) -> list[dict[str, Any]]:
    rows = []
    for path, meta in entries:
        if isinstance(meta, str):
            rows.append({"file": path.name, "name": path.stem, "method": "?", "architecture": "?", "dataset": "?",
                         "test accuracy": None, "test macro-F1": None, "created": "", "problem": meta})
            continue
        rows.append({
            "file": path.name, "name": meta.name or path.stem, "method": meta.method, "architecture": meta.arch,
            "dataset": (meta.dataset or {}).get("name", "—"), "test accuracy": _metric(meta, "test", "accuracy"),
            "test macro-F1": _metric(meta, "test", "macro_f1"), "created": meta.created.replace("T", " ")[:19],
            "problem": "",
        })
    return rows


# --------------------------------------------------------------------------- cached heavy objects


@st.cache_resource(show_spinner=False, max_entries=16)
def _load(path: str, mtime: float, size: int) -> LoadedCheckpoint:
    return load_checkpoint(path)


def load_model(path: Path) -> LoadedCheckpoint:
    """The model, shared across sessions; a changed file (mtime, size) is loaded afresh."""
    return _load(*file_key(Path(path)))


def dataset_spec(meta: CheckpointMeta) -> DatasetSpec:
    if not meta.dataset:
        raise UserError(f"checkpoint {meta.name or '?'} does not say which dataset it was trained on")
    return DatasetSpec.from_dict(meta.dataset)


def split_of(features, meta: CheckpointMeta) -> Split:
    """The data split ``features`` were extracted from (same in-process splits as the engine)."""
    return splits_for(dataset_spec(meta)).split(features.split)


# --------------------------------------------------------------------------- upload / delete


@dataclass(frozen=True)
class UploadOutcome:
    path: Path | None
    renamed: bool
    message: str
    level: str = "success"  # st.success / st.warning / st.info


ARCH_AUTO = "auto (as the file says)"
CLASSES_AUTO = 0  # the form's class count when the file (or the classifier's weight) says it


@st.cache_resource(show_spinner=False)
def architecture_choices() -> list[str]:
    """The upload form's architecture list: the file's own, our registry, then every timm model
    by name (1,300+; the selectbox filters as one types)."""
    from asl_core.models import ARCHITECTURES
    from asl_core.models.timm_models import timm_names

    return [ARCH_AUTO, *ARCHITECTURES, *(f"timm/{n}" for n in timm_names())]


def hub_zip(config: bytes, weights_name: str, weights: bytes) -> tuple[bytes, str]:
    """A timm hub folder uploaded as two files (config.json + its weights), as the ``.zip`` the
    library reads: ``(bytes, file name)``."""
    import io
    import zipfile

    member = "model.safetensors" if weights_name.lower().endswith(".safetensors") else "pytorch_model.bin"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hub/config.json", config)
        z.writestr(f"hub/{member}", weights)
    return out.getvalue(), f"{Path(weights_name).stem or 'hub'}.zip"


def is_ours(data: bytes) -> bool:
    """An ASL Lens checkpoint (safetensors with our metadata key), from the header bytes alone."""
    import json
    import struct

    from asl_core.checkpoint import META_KEY

    if len(data) < 9:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    if not 0 < n <= min(len(data) - 8, 100_000_000) or data[8:9] != b"{":
        return False
    if META_KEY.encode() not in data[8:8 + n]:  # a bytes search before parsing (foreign headers can be large)
        return False
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and META_KEY in (header.get("__metadata__") or {})


@st.cache_data(show_spinner=False, max_entries=8)
def describe_upload(data: bytes, file_name: str) -> tuple[str, str | None, str]:
    """``(level, architecture to preselect or None for 'auto', message)`` for the upload form: what a foreign file
    states, or the architecture its keys and shapes match (nothing in it is run)."""
    import tempfile

    from asl_core.checkpoint.foreign import describe

    if is_ours(data):
        return "info", None, "An ASL Lens checkpoint: it carries its architecture, classes and dataset."
    suffix = "".join(Path(file_name).suffixes[-2:]).lower()
    suffix = suffix if re.fullmatch(r"(\.[a-z0-9]{1,8}){1,2}", suffix) else ".bin"  # only the extension is kept
    with tempfile.TemporaryDirectory(prefix="asl-describe-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            d = describe(path, max_bytes=core_library.max_upload_bytes())
        except UserError as exc:
            return "error", None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a hostile file may break a reader in ways we did not foresee
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return "error", None, f"cannot read this file ({type(exc).__name__}: {first[:160]}); nothing in it was run"
    arch = None if d.arch else (d.guess.arch if d.guess else None)  # None: 'auto' (the file states it)
    level = "warning" if not d.arch and (d.guess is None or d.guess.confidence < 1.0) else "info"
    message = d.summary() + "."
    if not d.arch and d.guess:
        message += " It is selected below: confirm it or choose another."
    if d.has_ema:
        message += " The file holds EMA weights too (see *Use the EMA weights*)."
    return level, arch, message


def import_upload(data: bytes, file_name: str, folder: Path, *, name: str = "", arch: str | None = None,
                  num_classes: int | None = None, dataset: str | None = None, max_bytes: int, repeat_gray: bool = False,
                  image_size: int | None = None, normalize: str | None = None, use_ema: bool = True) -> UploadOutcome:
    """Add an uploaded file through ``asl_core.library.import_checkpoint``. The form's
    architecture, class count and dataset (a key of :func:`dataset_choices`, never a path)
    apply to foreign files only, and only where the file does not state them; our own
    checkpoints carry them. Weights already in the library are reported (info, not an error)
    with the name they are under, before any evaluation."""
    kwargs = dict(folder=folder, name=name or None, max_bytes=max_bytes)
    arch = None if arch in (None, ARCH_AUTO) else arch
    num_classes = None if not num_classes else num_classes
    try:
        if is_ours(data):
            result = core_library.import_checkpoint(data, file_name, **kwargs)
            kind = "checkpoint validated"
        else:
            result = core_library.import_checkpoint(data, file_name, arch=arch, num_classes=num_classes, dataset=dataset,
                                                    repeat_gray=repeat_gray, image_size=image_size, normalize=normalize,
                                                    use_ema=use_ema, **kwargs)
            m = result.meta
            kind = f"foreign weights validated as {m.arch} with {m.num_classes} classes and converted"
            if m.dataset:
                test = (m.metrics or {}).get("test", {})
                kind += f"; on {m.dataset.get('name')} test accuracy {test.get('accuracy', float('nan')):.3f}"
            if m.channel_repeat > 1:
                kind += f" (its grayscale channel repeated {m.channel_repeat}x for the 3-channel model)"
    except core_library.DuplicateCheckpointError as exc:
        return UploadOutcome(path=exc.existing, renamed=False, message=str(exc), level="info")
    note = ""
    if result.renamed_from:
        note = f" (the name {result.renamed_from!r} was taken or unsafe, so it is saved as {result.path.stem})"
    warnings = [w for w in result.meta.warnings if "below chance" in w or w.startswith("weights:")]
    hint = "".join(f" Note: {w}." for w in warnings)
    level = "warning" if result.renamed_from or any("below chance" in w for w in warnings) else "success"
    return UploadOutcome(path=result.path, renamed=bool(result.renamed_from),
                         message=f"{kind}; added {result.path.name} to the library{note}.{hint}", level=level)


def delete_checkpoint(folder: Path, file_name: str) -> None:
    path = library_path(folder, file_name)
    core_library.delete_checkpoint(path.stem, folder)




# --------------------------------------------------------------------------- storage (issue 14)


@st.cache_data(show_spinner=False, ttl=5)
def _cache_usage(root: str, max_bytes: int) -> tuple[int, int]:
    from asl_core.engine.cache import DiskCache

    usage = DiskCache(root, max_bytes=max_bytes).usage()
    return usage.bytes, usage.entries


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def storage_panel(settings) -> None:
    """The library's size against its quota and the disk cache's against its cap."""
    lib = core_library.library_usage(settings.checkpoints_dir)
    cache_bytes, cache_entries = _cache_usage(str(settings.cache_dir), settings.cache_max_bytes)
    left, right = st.columns(2)
    left.progress(min(lib.fraction, 1.0),
                  text=f"Library: {_mib(lib.bytes)} of its {_mib(lib.quota_bytes)} quota · {lib.checkpoints} checkpoint(s)")
    right.progress(min(cache_bytes / settings.cache_max_bytes, 1.0),
                   text=f"Cache: {_mib(cache_bytes)} of its {_mib(settings.cache_max_bytes)} cap · {cache_entries} entries "
                        "(least recently used go first)")


def resolve_models(files: list[str], asked: str) -> tuple[list[str], list[str]]:
    """A link's ``models=a,b.safetensors``: names with or without the extension -> ``(library
    files in the order asked, unknown names)``. Duplicates are dropped."""
    found, unknown = [], []
    for name in (n.strip() for n in asked.split(",")):
        if not name:
            continue
        file = name if name.endswith(CHECKPOINT_SUFFIX) else f"{name}{CHECKPOINT_SUFFIX}"
        if file in files:
            if file not in found:
                found.append(file)
        else:
            unknown.append(name)
    return found, unknown


def default_comparison(files: list[str], asked: str | None = None) -> list[str]:
    """``asked`` (a link's ``?models=a,b``, with or without the extension) when at least two of
    them are in the library, else the demo trio when all of it is present, else the baseline and the next files, else the first three files."""
    if asked:
        wanted = resolve_models(files, asked)[0][:3]
        if len(wanted) >= 2:
            return wanted
    demo = [f"{n}{CHECKPOINT_SUFFIX}" for n in DEMO_COMPARISON if f"{n}{CHECKPOINT_SUFFIX}" in files]
    if len(demo) == len(DEMO_COMPARISON):
        return demo
    ref = f"{DEMO_COMPARISON[0]}{CHECKPOINT_SUFFIX}"  # the reference first, then the library's order
    return ([ref] + [f for f in files if f != ref])[:3] if ref in files else files[:3]


def preset_names() -> list[str]:
    return list(PRESETS)


def dataset_choices(roots: tuple[Path, ...]) -> dict[str, KnownDataset]:
    """The datasets the upload form offers, by key: the presets, then what the operator's
    ``ASL_LENS_DATA_ROOTS`` hold (listed afresh on each run: a folder added is seen at once)."""
    return {known.key: known for known in known_datasets(roots)}
