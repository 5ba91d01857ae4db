"""The checkpoint library: listing, cached loading, safe import of uploads, deletion.

Uploads are untrusted. They are written to a private temporary folder, loaded only
through ``asl_core.checkpoint.load_checkpoint`` (safetensors, or ``torch.load`` with
``weights_only=True``), and join the library only as a fresh file written by
``save_checkpoint`` under a sanitised name that never replaces an existing one.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from asl_core.checkpoint import (
    CHECKPOINT_SUFFIX, FOREIGN_SUFFIXES, META_KEY, CheckpointMeta, LoadedCheckpoint, list_checkpoints, load_checkpoint,
    save_checkpoint,
)
from asl_core.analysis import splits_for
from asl_core.data import PRESETS, DatasetSpec, Split, Splits, get_spec
from asl_core.errors import CheckpointError, UserError

UPLOAD_SUFFIXES = (CHECKPOINT_SUFFIX,) + FOREIGN_SUFFIXES
MAX_NAME_LEN = 64


# --------------------------------------------------------------------------- names


def safe_name(raw: str) -> str:
    """A file stem that cannot escape the library folder.

    Keeps the last path component only, drops control characters and anything outside
    ``[A-Za-z0-9._-]`` (spaces become ``-``), strips leading dots and known suffixes.
    Raises ``UserError`` when nothing usable is left."""
    text = unicodedata.normalize("NFKC", str(raw or ""))
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = re.split(r"[\\/]", text)[-1].strip()
    for suffix in UPLOAD_SUFFIXES:
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
            break
    text = re.sub(r"\s+", "-", text)
    text = re.sub(r"[^A-Za-z0-9._-]", "", text)
    text = re.sub(r"\.{2,}", ".", text).lstrip(".-").rstrip(".")[:MAX_NAME_LEN]
    if not text:
        raise UserError(f"{raw!r} gives no usable file name; use letters, digits, '.', '_' or '-'")
    return text


def free_path(folder: Path, stem: str) -> tuple[Path, bool]:
    """``folder/stem.safetensors``, or ``stem-2``, ``stem-3``... when taken. Returns (path, renamed)."""
    path = folder / f"{stem}{CHECKPOINT_SUFFIX}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{CHECKPOINT_SUFFIX}"
        n += 1
    return path, path.stem != stem


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
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        if raw is None:
            return "not an ASL Lens checkpoint (no metadata)"
        return CheckpointMeta.from_dict(json.loads(raw))
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
class ImportResult:
    path: Path
    renamed: bool
    message: str


def _evaluate(model, splits: Splits) -> dict[str, Any]:
    from asl_core.train import evaluate

    return {name: evaluate(model, splits.split(name), splits.mean, splits.std, model_device(model), splits.num_classes)
            for name in ("val", "test")}


def model_device(model):
    import torch

    return next(model.parameters(), torch.empty(0)).device


def import_upload(data: bytes, file_name: str, folder: Path, *, name: str = "", arch: str | None = None,
                  num_classes: int | None = None, dataset: str | None = None, max_bytes: int) -> ImportResult:
    """Validate an uploaded checkpoint and add it to ``folder``.

    Ours (``.safetensors`` with metadata) is checked as is. Anything else is read as
    weights for ``arch`` with ``num_classes``; with a ``dataset`` preset its classes and
    normalisation come from that dataset and it is evaluated on it."""
    suffix = Path(str(file_name)).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UserError(f"unsupported file type {suffix or '(none)'!r}; upload {', '.join(UPLOAD_SUFFIXES)}")
    if len(data) > max_bytes:
        raise UserError(f"the file is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB upload limit")
    stem = safe_name(name or file_name)
    with tempfile.TemporaryDirectory(prefix="asl-upload-") as tmp:
        tmp_path = Path(tmp) / f"upload{suffix}"
        tmp_path.write_bytes(data)
        try:
            loaded = load_checkpoint(tmp_path, max_bytes=max_bytes)
            foreign = False
        except CheckpointError as exc:
            if "not an ASL Lens checkpoint" not in str(exc):
                raise
            if not arch:
                raise UserError("this is not an ASL Lens checkpoint: choose its architecture and class count") from None
            loaded = load_checkpoint(tmp_path, arch=arch, num_classes=num_classes, max_bytes=max_bytes)
            foreign = True
    meta = dataclasses.replace(loaded.meta, name=stem)
    if foreign and dataset:
        spec = get_spec(dataset)
        splits = splits_for(spec)
        if splits.num_classes != meta.num_classes:
            raise UserError(f"the model has {meta.num_classes} classes; dataset {dataset!r} has {splits.num_classes}")
        if tuple(splits.input_shape)[0] != meta.in_channels:
            raise UserError(f"the model takes {meta.in_channels}-channel images; dataset {dataset!r} has {splits.input_shape[0]}")
        meta = dataclasses.replace(meta, dataset=spec.to_dict(), class_names=splits.class_names,
                                   input_shape=tuple(splits.input_shape), mean=splits.mean, std=splits.std)
        meta = dataclasses.replace(meta, metrics=_evaluate(loaded.model, splits))
    folder.mkdir(parents=True, exist_ok=True)
    path, renamed = free_path(folder, stem)
    save_checkpoint(loaded.model, dataclasses.replace(meta, content_hash=""), path)
    kind = "foreign weights converted" if foreign else "checkpoint validated"
    note = f" (a checkpoint named {stem} exists, saved as {path.stem} instead)" if renamed else ""
    return ImportResult(path=path, renamed=renamed, message=f"{kind}; added {path.name} to the library{note}")


def delete_checkpoint(folder: Path, file_name: str) -> None:
    path = library_path(folder, file_name)
    if not path.exists():
        raise UserError(f"{file_name} is no longer in the library")
    path.unlink()


DEMO_MODELS = ("baseline", "asloss", "clonal")


def default_comparison(files: list[str]) -> list[str]:
    """The demo trio when present, else the first three files."""
    demo = [f"{n}{CHECKPOINT_SUFFIX}" for n in DEMO_MODELS if f"{n}{CHECKPOINT_SUFFIX}" in files]
    return demo if len(demo) >= 2 else files[:3]


def preset_names() -> list[str]:
    return list(PRESETS)
