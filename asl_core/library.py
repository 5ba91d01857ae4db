"""The checkpoint library: a folder of our ``.safetensors`` checkpoints.

Untrusted files (browser uploads, files from elsewhere) join it only through
:func:`import_checkpoint`: size-checked, loaded with the safe loaders, validated against
the architecture, converted to our format and written atomically under a sanitised name.
Nothing in the library changes unless the whole import succeeds.

    asl-lens library list [--folder checkpoints]
    asl-lens library import FILE|FOLDER [--arch resnet18|timm/<name> --num-classes 10 --dataset digits --repeat-gray
                                         --normalize dataset|imagenet --weights ema|raw --name NAME]
    asl-lens library check FILE [--arch ... --num-classes ...]
    asl-lens library datasets          (the presets and what ASL_LENS_DATA_ROOTS holds)
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
    read_metadata,
    serialize,
)
from asl_core.data import PRESETS, DatasetSpec, check_root_allowed, known_datasets, resolve_dataset
from asl_core.errors import CheckpointError, NotOurCheckpointError, ReadOnlyError, StorageError, UserError, cli_entry
from asl_core.settings import LIBRARY_QUOTA_ENV, READ_ONLY_ENV, get_settings

ACCEPTED_SUFFIXES = (CHECKPOINT_SUFFIX, *FOREIGN_SUFFIXES)
NORMALIZATIONS = ("dataset", "imagenet")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def default_folder() -> Path:
    return get_settings().checkpoints_dir


def max_upload_bytes() -> int:
    return min(get_settings().max_upload_bytes, MAX_CHECKPOINT_BYTES)


def safe_name(raw: str) -> str:
    """A file stem safe to join to the library folder: the last path component only, ASCII
    letters, digits, ``._-``; no leading dots; at most 80 characters. Raises if nothing is left."""
    base = re.split(r"[\\/]", str(raw))[-1]
    for _ in range(2):  # model_best.pth.tar -> model_best
        for suffix in ACCEPTED_SUFFIXES:
            if base.lower().endswith(suffix):
                base = base[: -len(suffix)]
                break
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = _NAME_OK.sub("_", base).strip("._-")[:80]
    if not base:
        raise UserError(f"{raw!r} is not usable as a checkpoint name; use letters, digits, '.', '_' or '-'")
    return base


class DuplicateCheckpointError(CheckpointError):
    """The library already holds a checkpoint with the same content hash (same weights, same
    input handling); ``existing`` is its path."""

    def __init__(self, message: str, existing: Path):
        super().__init__(message)
        self.existing = existing


@dataclass(frozen=True)
class ImportResult:
    path: Path
    meta: CheckpointMeta
    renamed_from: str | None = None  # the asked-for name when it was taken or unsafe


def _check_suffix(filename: str, path: Path | None = None) -> None:
    if path is not None and path.is_dir():  # a timm hub folder (CLI only; the browser sends a .zip)
        return
    if not filename.lower().endswith(ACCEPTED_SUFFIXES):
        raise CheckpointError(f"{filename!r}: expected one of {', '.join(ACCEPTED_SUFFIXES)}")


def validate_file(
    path: Path, filename: str | None = None, arch: str | None = None, num_classes: int | None = None,
    dataset: str | DatasetSpec | None = None, max_bytes: int | None = None, *, repeat_gray: bool = False,
    image_size: int | None = None, normalize: str | None = None, use_ema: bool | None = None,
    evaluate: bool = True,
) -> LoadedCheckpoint:
    """Load and validate an untrusted file without touching the library. Foreign weights
    get ``arch``/``num_classes``/``dataset`` from the caller (the upload form) where the file does
    not state them. ``dataset`` is a spec or the key of a dataset the server knows
    (:func:`asl_core.data.known_datasets`: a preset, or one found under ``ASL_LENS_DATA_ROOTS``).
    ``repeat_gray`` lets a 3-channel model run on grayscale data by repeating the channel (recorded
    as ``meta.channel_repeat``); ``image_size`` is the side image folders and torchvision files are
    resized to; ``normalize`` ("dataset" or "imagenet") is the mean/std for weights whose file does
    not state its own; ``use_ema``: a timm checkpoint's EMA weights (default) or raw ones.
    ``evaluate=False`` attaches the dataset without running the model on it (see :func:`evaluate_on`)."""
    _check_suffix(filename or path.name, Path(path))
    ck = load_checkpoint(path, arch=arch, num_classes=num_classes, max_bytes=max_bytes or max_upload_bytes(),
                         use_ema=use_ema)
    if ck.meta.source == "foreign" and dataset is not None:
        spec = dataset if isinstance(dataset, DatasetSpec) else dataset_for(dataset, ck.meta, image_size)
        meta = _with_dataset(ck.meta, spec, repeat_gray, normalize)
        ck = dataclasses.replace(ck, meta=meta)
        if evaluate:
            ck = evaluate_on(ck, spec)
    return ck


def dataset_for(key: str, meta: CheckpointMeta, image_size: int | None = None) -> DatasetSpec:
    """A known dataset by key, read as the weights need it: an image folder in the model's
    channel count (RGB for a 3-channel model)."""
    return resolve_dataset(key, get_settings().data_roots, image_size=image_size, channels=meta.in_channels)


def _with_dataset(meta: CheckpointMeta, spec: DatasetSpec, repeat_gray: bool = False,
                  normalize: str | None = None) -> CheckpointMeta:
    """Attach a dataset to foreign weights: class names from it; the input recipe from the file
    where it states one (timm's pretrained_cfg, train.py's args, an export's input size), else the
    data's size with its training split's statistics, or ImageNet's when ``normalize`` says so."""
    from asl_core.checkpoint.recipe import IMAGENET_MEAN, IMAGENET_STD
    from asl_core.data import build_splits

    if normalize not in (None, *NORMALIZATIONS):
        raise UserError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    splits = build_splits(spec)
    if splits.num_classes != meta.num_classes:
        raise CheckpointError(f"the weights have {meta.num_classes} classes; dataset {spec.name!r} has {splits.num_classes}")
    data_channels, (_, height, width) = splits.input_shape[0], splits.input_shape
    stated = meta.recipe_source in ("file", "architecture")
    if stated:  # the model's own input size, mean and std (resize/crop bring the data to it)
        mean, std, repeat, shape = meta.mean, meta.std, 1, meta.input_shape
    else:
        mean, std, repeat, shape = splits.mean, splits.std, 1, (meta.in_channels, height, width)
    if normalize == "imagenet" and meta.in_channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if data_channels != meta.in_channels:
        if data_channels == 1 and meta.in_channels == 3 and repeat_gray:
            repeat = 3
            if not stated and normalize != "imagenet":
                mean, std = mean * 3, std * 3
        elif data_channels == 1 and meta.in_channels == 3:
            raise CheckpointError(f"the weights take 3-channel images; dataset {spec.name!r} is grayscale: allow repeating "
                                  "its channel ('Repeat a grayscale channel for RGB weights' in the form, --repeat-gray on the CLI)")
        else:
            raise CheckpointError(f"the weights take {meta.in_channels}-channel images; dataset {spec.name!r} has {data_channels}")
    return dataclasses.replace(meta, dataset=spec.to_dict(), class_names=splits.class_names, input_shape=tuple(shape), mean=tuple(mean),
                               std=tuple(std), channel_repeat=repeat,
                               recipe_source="imagenet" if normalize == "imagenet" else meta.recipe_source)


def below_chance_hint(meta: CheckpointMeta) -> str | None:
    """The plain hint for an import that scores below chance (issue 18 item 4)."""
    acc = (meta.metrics or {}).get("test", {}).get("accuracy")
    chance = 1.0 / meta.num_classes
    if acc is None or acc >= chance:
        return None
    return (f"accuracy {acc:.3f} is below chance ({chance:.2f}): the model may expect other preprocessing "
            "(size, mean/std, channels)")


def evaluate_on(ck: LoadedCheckpoint, spec: DatasetSpec) -> LoadedCheckpoint:
    """Evaluate foreign weights on their dataset's validation and test splits, so the library can
    show their figures; a score below chance adds the preprocessing hint to the warnings."""
    from asl_core.data import build_splits
    from asl_core.engine.features import evaluate
    from asl_core.engine.options import CPU

    splits = build_splits(spec)
    meta = ck.meta
    metrics = {name: evaluate(ck.model, splits.split(name), meta.mean, meta.std, CPU, meta.num_classes,
                              channel_repeat=meta.channel_repeat) for name in ("val", "test")}
    meta = dataclasses.replace(meta, metrics=metrics)
    hint = below_chance_hint(meta)
    if hint:
        meta = dataclasses.replace(meta, warnings=(*meta.warnings, hint))
    return dataclasses.replace(ck, meta=meta)


def find_duplicate(folder: Path, content_hash: str) -> Path | None:
    """The library file whose metadata carries ``content_hash`` (headers only; unreadable files
    are skipped: they are listed with their problem elsewhere)."""
    if not content_hash:
        return None
    for path in list_checkpoints(folder):
        try:
            if read_metadata(path).content_hash == content_hash:
                return path
        except CheckpointError:
            continue
    return None


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
    overwrite: bool = False, max_bytes: int | None = None, *, repeat_gray: bool = False,
    image_size: int | None = None, allow_duplicate: bool = False, normalize: str | None = None,
    use_ema: bool | None = None,
) -> ImportResult:
    """Validate an untrusted checkpoint and add it to the library in our format.

    ``source`` is a path (a file, or a timm hub folder) or the uploaded bytes; ``filename`` is the
    name it came with (only its extension and a sanitised stem are used). An existing name is never
    overwritten silently: without ``overwrite`` the new file gets a ``-2``, ``-3`` ... suffix, which
    the result reports. Weights already in the library (same content hash) raise
    :class:`DuplicateCheckpointError` naming the file, unless ``allow_duplicate``; this is found
    from the hash before foreign weights are evaluated, so a duplicate costs no evaluation.
    ``dataset``, ``repeat_gray``, ``image_size``, ``normalize``, ``use_ema``: see :func:`validate_file`."""
    refuse_if_read_only("importing a checkpoint")
    folder = Path(folder or default_folder())
    limit = max_bytes or max_upload_bytes()
    options = dict(repeat_gray=repeat_gray, image_size=image_size, normalize=normalize, use_ema=use_ema, evaluate=False)
    if isinstance(source, (bytes, bytearray)):
        _check_suffix(filename)
        if len(source) > limit:
            raise CheckpointError(f"the file is {len(source) / 2**20:.1f} MiB, over the {limit / 2**20:.2f} MiB upload limit")
        suffix = Path(filename).suffix.lower()
        # the upload is checked from a private temporary file, never inside the library
        with tempfile.TemporaryDirectory(prefix="asl-upload-") as tmp:
            tmp_path = Path(tmp) / f"upload{suffix}"
            tmp_path.write_bytes(bytes(source))
            ck = validate_file(tmp_path, filename, arch, num_classes, dataset, limit, **options)
    else:
        _check_suffix(filename, Path(source))
        ck = validate_file(Path(source), filename, arch, num_classes, dataset, limit, **options)
    spec = DatasetSpec.from_dict(ck.meta.dataset) if ck.meta.dataset else None
    if spec is not None:  # never let a file make the server read data outside the allowed folders
        check_root_allowed(spec, get_settings().data_roots)
    wanted = safe_name(name or filename)
    folder.mkdir(parents=True, exist_ok=True)
    stem = wanted if overwrite else _free_name(folder, wanted)
    meta = dataclasses.replace(ck.meta, name=stem)
    if meta.source == "foreign":
        meta = dataclasses.replace(meta, content_hash="", created="", versions={})
    # serialize() fills in the hash (weights and what changes the computation; metrics are not in it)
    data, meta = serialize(ck.model, meta, ck.graph)
    path = checkpoint_path(folder / stem)
    twin = None if allow_duplicate else find_duplicate(folder, meta.content_hash)
    if twin is not None and not (overwrite and twin.name == path.name):
        raise DuplicateCheckpointError(f"the library already holds these weights as {twin.name} (same content hash "
                                       f"{meta.content_hash[:12]}); nothing was added", twin)
    if meta.source == "foreign" and spec is not None and not meta.metrics:
        ck = evaluate_on(dataclasses.replace(ck, meta=meta), spec)
        data, meta = serialize(ck.model, ck.meta, ck.graph)
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
        q.add_argument("--arch", help="architecture of foreign weights that do not state it: resnet18, digits_cnn, ... or "
                                      "any timm model as timm/<name> (e.g. timm/convnext_atto)")
        q.add_argument("--num-classes", type=int)
        q.add_argument("--dataset", help=f"dataset to evaluate foreign weights on: a preset ({', '.join(PRESETS)}) or a "
                                         "key from `asl-lens library datasets`")
        q.add_argument("--repeat-gray", action="store_true",
                       help="feed a grayscale dataset to a 3-channel model by repeating the channel (recorded in the metadata)")
        q.add_argument("--image-size", type=int, help="side image folders and torchvision files are resized to")
        q.add_argument("--normalize", choices=NORMALIZATIONS,
                       help="mean/std for weights whose file states none: the dataset's (default) or ImageNet's")
        q.add_argument("--weights", choices=("ema", "raw"), default="ema",
                       help="a timm train.py checkpoint holding both: its EMA weights (default) or the raw ones")
        if cmd == "import":
            q.add_argument("--name", help="name in the library (default: the file name, sanitised)")
            q.add_argument("--overwrite", action="store_true")
            q.add_argument("--allow-duplicate", action="store_true",
                           help="add the weights even when the library holds the same content hash")
    sub.add_parser("datasets", help="list the datasets foreign weights can be evaluated on")
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
    if args.command == "datasets":
        for known in known_datasets(get_settings().data_roots):
            print(f"{known.key:<40} {known.label}")
        return 0
    if args.command == "delete":
        print(f"deleted {delete_checkpoint(args.name, folder)}")
        return 0
    if not (args.file.is_file() or args.file.is_dir()):
        raise UserError(f"file not found: {args.file}")
    if args.command == "check":
        ck = validate_file(args.file, args.file.name, args.arch, args.num_classes, args.dataset,
                           repeat_gray=args.repeat_gray, image_size=args.image_size, normalize=args.normalize,
                           use_ema=args.weights == "ema")
        print(f"ok: {ck.meta.arch}, {ck.meta.num_classes} classes, method {ck.meta.method}, hash {ck.meta.content_hash[:12]}")
        for warning in ck.meta.warnings:
            print(f"note: {warning}")
        return 0
    try:
        result = import_checkpoint(args.file, args.file.name, folder, name=args.name, arch=args.arch,
                                   num_classes=args.num_classes, dataset=args.dataset, overwrite=args.overwrite,
                                   repeat_gray=args.repeat_gray, image_size=args.image_size,
                                   allow_duplicate=args.allow_duplicate, normalize=args.normalize,
                                   use_ema=args.weights == "ema")
    except NotOurCheckpointError as exc:  # say what the keys look like (a few seconds, only here)
        from asl_core.checkpoint.foreign import describe

        guess = describe(args.file).guess
        hint = f"; from its keys and shapes it looks like {guess.describe()} (--arch {guess.arch})" if guess else ""
        raise NotOurCheckpointError(f"{exc}{hint}") from None
    note = f" (the name {result.renamed_from!r} was taken or unsafe)" if result.renamed_from else ""
    print(f"imported {result.path}{note}")
    print(f"  {result.meta.arch}, {result.meta.num_classes} classes, input {'x'.join(map(str, result.meta.input_shape))}"
          + (f", test accuracy {result.meta.metrics['test']['accuracy']:.3f}" if result.meta.metrics.get("test") else ""))
    for warning in result.meta.warnings:
        print(f"  note: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
