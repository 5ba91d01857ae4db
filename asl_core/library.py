"""The checkpoint library: a folder of our ``.safetensors`` checkpoints.

Untrusted files (browser uploads, files from elsewhere) join it only through
:func:`import_checkpoint`: size-checked, loaded with the safe loaders, validated against
the architecture, converted to our format and written atomically under a sanitised name.
Nothing in the library changes unless the whole import succeeds.

    asl-lens library list [--folder checkpoints]
    asl-lens library import FILE [--arch resnet18 --num-classes 10 --dataset digits --name NAME]
    asl-lens library check FILE [--arch ... --num-classes ...]
    asl-lens library delete NAME

A server that shows a fixed set of models sets ``ASL_LENS_READ_ONLY=1``: import and delete
are refused (:class:`~asl_core.errors.ReadOnlyError`), in the app and on the command line.
The library's total size is capped by ``ASL_LENS_LIBRARY_QUOTA_MB``; an import that would
pass it, or that meets a full disk, is refused and leaves the library as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from asl_core.checkpoint import (
    CHECKPOINT_SUFFIX,
    FOREIGN_SUFFIXES,
    MAX_CHECKPOINT_BYTES,
    CheckpointMeta,
    LoadedCheckpoint,
    atomic_write_bytes,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    serialize,
)
from asl_core.data import PRESETS, DatasetSpec, get_spec
from asl_core.errors import CheckpointError, ReadOnlyError, StorageError, UserError, cli_entry
from asl_core.settings import LIBRARY_QUOTA_ENV, READ_ONLY_ENV, get_settings

ACCEPTED_SUFFIXES = (CHECKPOINT_SUFFIX, *FOREIGN_SUFFIXES)
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def default_folder() -> Path:
    return get_settings().checkpoints_dir


def max_upload_bytes() -> int:
    return min(get_settings().max_upload_bytes, MAX_CHECKPOINT_BYTES)


def safe_name(raw: str) -> str:
    """A file stem safe to join to the library folder: the last path component only, ASCII
    letters, digits, ``._-``; no leading dots; at most 80 characters. Raises if nothing is left."""
    base = re.split(r"[\\/]", str(raw))[-1]
    for suffix in ACCEPTED_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = _NAME_OK.sub("_", base).strip("._-")[:80]
    if not base:
        raise UserError(f"{raw!r} is not usable as a checkpoint name; use letters, digits, '.', '_' or '-'")
    return base


@dataclass(frozen=True)
class ImportResult:
    path: Path
    meta: CheckpointMeta
    renamed_from: str | None = None  # the asked-for name when it was taken or unsafe


def _check_suffix(filename: str) -> None:
    if not filename.lower().endswith(ACCEPTED_SUFFIXES):
        raise CheckpointError(f"{filename!r}: expected one of {', '.join(ACCEPTED_SUFFIXES)}")


def validate_file(
    path: Path, filename: str | None = None, arch: str | None = None, num_classes: int | None = None,
    dataset: str | DatasetSpec | None = None, max_bytes: int | None = None,
) -> LoadedCheckpoint:
    """Load and validate an untrusted file without touching the library. Foreign weights
    get ``arch``/``num_classes``/``dataset`` from the caller (the upload form)."""
    _check_suffix(filename or path.name)
    ck = load_checkpoint(path, arch=arch, num_classes=num_classes, max_bytes=max_bytes or max_upload_bytes())
    if ck.meta.source == "foreign" and dataset is not None:
        spec = dataset if isinstance(dataset, DatasetSpec) else get_spec(dataset)
        meta = _with_dataset(ck.meta, spec, ck.model)
        ck = LoadedCheckpoint(model=ck.model, meta=meta, path=ck.path)
    return ck


def _with_dataset(meta: CheckpointMeta, spec: DatasetSpec, model) -> CheckpointMeta:
    """Attach a dataset to foreign weights: class names, input shape and normalisation
    come from that dataset's training split, and the weights are evaluated on its
    validation and test splits so the library can show their figures."""
    import torch

    from asl_core.data import build_splits
    from asl_core.engine.features import evaluate

    splits = build_splits(spec)
    if splits.num_classes != meta.num_classes:
        raise CheckpointError(f"the weights have {meta.num_classes} classes; dataset {spec.name!r} has {splits.num_classes}")
    if splits.input_shape[0] != meta.in_channels:
        raise CheckpointError(f"the weights take {meta.in_channels}-channel images; dataset {spec.name!r} has {splits.input_shape[0]}")
    meta = dataclasses.replace(meta, dataset=spec.to_dict(), class_names=splits.class_names,
                               input_shape=splits.input_shape, mean=splits.mean, std=splits.std)
    cpu = torch.device("cpu")
    metrics = {name: evaluate(model, splits.split(name), meta.mean, meta.std, cpu, meta.num_classes) for name in ("val", "test")}
    return dataclasses.replace(meta, metrics=metrics)


def _free_name(folder: Path, stem: str) -> str:
    if not (folder / f"{stem}{CHECKPOINT_SUFFIX}").exists():
        return stem
    for i in range(2, 10_000):
        candidate = f"{stem}-{i}"
        if not (folder / f"{candidate}{CHECKPOINT_SUFFIX}").exists():
            return candidate
    raise UserError(f"too many checkpoints named {stem!r}")


def import_checkpoint(
    source: Path | bytes, filename: str, folder: Path | None = None, name: str | None = None,
    arch: str | None = None, num_classes: int | None = None, dataset: str | DatasetSpec | None = None,
    overwrite: bool = False, max_bytes: int | None = None,
) -> ImportResult:
    """Validate an untrusted checkpoint and add it to the library in our format.

    ``source`` is a path or the uploaded bytes; ``filename`` is the name it came with (only
    its extension and a sanitised stem are used). An existing name is never overwritten
    silently: without ``overwrite`` the new file gets a ``-2``, ``-3`` ... suffix, which
    the result reports."""
    refuse_if_read_only("importing a checkpoint")
    folder = Path(folder or default_folder())
    limit = max_bytes or max_upload_bytes()
    _check_suffix(filename)
    if isinstance(source, (bytes, bytearray)):
        if len(source) > limit:
            raise CheckpointError(f"the file is {len(source) / 2**20:.1f} MiB, over the {limit / 2**20:.2f} MiB upload limit")
        suffix = Path(filename).suffix.lower()
        # the upload is checked from a private temporary file, never inside the library
        with tempfile.TemporaryDirectory(prefix="asl-upload-") as tmp:
            tmp_path = Path(tmp) / f"upload{suffix}"
            tmp_path.write_bytes(bytes(source))
            ck = validate_file(tmp_path, filename, arch, num_classes, dataset, limit)
    else:
        ck = validate_file(Path(source), filename, arch, num_classes, dataset, limit)
    wanted = safe_name(name or filename)
    folder.mkdir(parents=True, exist_ok=True)
    stem = wanted if overwrite else _free_name(folder, wanted)
    meta = dataclasses.replace(ck.meta, name=stem)
    if meta.source == "foreign":
        meta = dataclasses.replace(meta, content_hash="", created="", versions={})
    # serialize() fills in the hash, versions and time; the saved file need not be read back
    data, meta = serialize(ck.model, meta)
    path = checkpoint_path(folder / stem)
    check_quota(folder, len(data), replacing=path)
    write_into_library(path, data)
    renamed = (name or filename) if stem != (name or Path(filename).stem) else None
    return ImportResult(path=path, meta=meta, renamed_from=renamed)


def delete_checkpoint(name: str, folder: Path | None = None) -> Path:
    """Remove one checkpoint from the library by name (sanitised; never outside the folder)."""
    refuse_if_read_only("deleting a checkpoint")
    folder = Path(folder or default_folder())
    path = folder / f"{safe_name(name)}{CHECKPOINT_SUFFIX}"
    if not path.is_file():
        raise UserError(f"no checkpoint named {name!r} in {folder}")
    path.unlink()
    return path


# --------------------------------------------------------------------------- bounded, read-only library (issue 14)


def read_only() -> bool:
    """True on a server started with ``ASL_LENS_READ_ONLY=1``: the library cannot change."""
    return get_settings().read_only


def refuse_if_read_only(action: str) -> None:
    """Called first by every function that changes the library."""
    if read_only():
        raise ReadOnlyError(f"{action} is disabled: this server is read-only ({READ_ONLY_ENV}=1)")


@dataclass(frozen=True)
class LibraryUsage:
    """Total bytes of the library's checkpoints, their count, and the quota in bytes."""

    bytes: int
    checkpoints: int
    quota_bytes: int

    @property
    def fraction(self) -> float:
        return self.bytes / self.quota_bytes if self.quota_bytes else 0.0


def library_usage(folder: Path | None = None) -> LibraryUsage:
    folder = Path(folder or default_folder())
    sizes = []
    for path in list_checkpoints(folder):
        try:
            sizes.append(path.stat().st_size)
        except OSError:  # deleted while we counted
            pass
    return LibraryUsage(bytes=sum(sizes), checkpoints=len(sizes), quota_bytes=get_settings().library_quota_bytes)


def check_quota(folder: Path, incoming: int, replacing: Path | None = None) -> None:
    """Refuse a write of ``incoming`` bytes that would take the library past its quota
    (a file it replaces does not count twice)."""
    usage = library_usage(folder)
    current = usage.bytes
    if replacing is not None and replacing.is_file():
        current -= replacing.stat().st_size
    if current + incoming > usage.quota_bytes:
        raise StorageError(
            f"the library is full: it holds {current / 2**20:.1f} MiB and this checkpoint needs {incoming / 2**20:.1f} MiB, "
            f"over its {usage.quota_bytes / 2**20:.1f} MiB quota ({LIBRARY_QUOTA_ENV}); delete checkpoints or raise it")


def write_into_library(path: Path, data: bytes) -> None:
    """The atomic write, with a full disk (or a read-only folder) as a clear refusal: the
    temporary file is removed and the library is unchanged."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise StorageError(f"the disk holding {path.parent} is full ({exc.strerror}); "
                               f"{path.name} was not added and nothing else changed") from None
        raise StorageError(f"could not write {path.name} into {path.parent}: {exc.strerror or exc}; "
                           "nothing was changed") from None


# --------------------------------------------------------------------------- CLI


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="asl-lens library", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=None, help="library folder (default checkpoints/ or $ASL_LENS_CHECKPOINTS)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the library")
    for cmd in ("import", "check"):
        q = sub.add_parser(cmd, help=f"{cmd} a checkpoint file")
        q.add_argument("file", type=Path)
        q.add_argument("--arch", help="architecture of foreign weights (resnet18, digits_cnn, ...)")
        q.add_argument("--num-classes", type=int)
        q.add_argument("--dataset", choices=tuple(PRESETS), help="dataset preset the foreign weights were trained on")
        if cmd == "import":
            q.add_argument("--name", help="name in the library (default: the file name, sanitised)")
            q.add_argument("--overwrite", action="store_true")
    q = sub.add_parser("delete", help="delete a checkpoint from the library")
    q.add_argument("name")
    args = p.parse_args(argv)
    folder = args.folder or default_folder()
    if args.command in ("import", "delete"):
        refuse_if_read_only(f"'library {args.command}'")
    if args.command == "list":
        for path in list_checkpoints(folder):
            try:
                m = load_checkpoint(path).meta
                t = m.metrics.get("test", {})
                print(f"{path.stem:<24} {m.method:<9} {m.arch:<14} test acc {t.get('accuracy', float('nan')):.4f}")
            except CheckpointError as exc:
                print(f"{path.stem:<24} unreadable: {exc}")
        return 0
    if args.command == "delete":
        print(f"deleted {delete_checkpoint(args.name, folder)}")
        return 0
    if not args.file.is_file():
        raise UserError(f"file not found: {args.file}")
    if args.command == "check":
        ck = validate_file(args.file, args.file.name, args.arch, args.num_classes, args.dataset)
        print(f"ok: {ck.meta.arch}, {ck.meta.num_classes} classes, method {ck.meta.method}, hash {ck.meta.content_hash[:12]}")
        return 0
    result = import_checkpoint(args.file, args.file.name, folder, name=args.name, arch=args.arch, num_classes=args.num_classes,
                               dataset=args.dataset, overwrite=args.overwrite)
    note = f" (the name {result.renamed_from!r} was taken or unsafe)" if result.renamed_from else ""
    print(f"imported {result.path}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
