"""The datasets a server knows: the presets, and what an operator's allowed folders hold.

Foreign weights are evaluated on a dataset the person picks by *name* from
:func:`known_datasets`; the browser never sends a path. An operator lists folders in
``ASL_LENS_DATA_ROOTS`` (``os.pathsep``-separated); each root and its direct sub-folders are
looked at for

- an image folder: at least two sub-folders (one per class) with image files in them;
- torchvision's MNIST / Fashion-MNIST (``MNIST/raw/...``, ``FashionMNIST/raw/...``) or CIFAR-10
  (``cifar-10-batches-py/``) files, as torchvision lays them out (never downloaded).

Discovery lists folders and uses the loader's own class rule (:mod:`asl_core.data.manifest`: a
class is a sub-folder with an image file in it); images are read when a dataset is built.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asl_core.data.manifest import class_dirs
from asl_core.data.spec import PRESETS, DatasetSpec
from asl_core.errors import DataError

# (source, files that must exist under a candidate root) in torchvision's own layout
_TORCHVISION_LAYOUTS = (
    ("mnist", ("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-images-idx3-ubyte")),
    ("fashion-mnist", ("FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/t10k-images-idx3-ubyte")),
    ("cifar10", ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta")),
)
_SOURCE_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "folder": "image folder"}
# bounds that keep discovery quick on a big disk: entries looked at per folder
MAX_ENTRIES = 500


@dataclass(frozen=True)
class KnownDataset:
    """``key``: what a form or the CLI passes back (a preset name, or ``source:path``); ``label``:
    what a person reads; ``spec``: how to build it."""

    key: str
    label: str
    spec: DatasetSpec

    @property
    def is_preset(self) -> bool:
        return self.key in PRESETS


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            out = []
            for entry in it:
                out.append(entry)
                if len(out) >= MAX_ENTRIES:
                    break
            return sorted(out, key=lambda e: e.name)
    except OSError:
        return []


def _image_classes(folder: Path) -> list[str]:
    """The class folders of ``folder``, by the loader's own rule (:func:`asl_core.data.manifest.class_dirs`)."""
    return class_dirs(folder)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def _candidates(root: Path) -> list[Path]:
    out = [root]
    for entry in _entries(root):
        try:
            if not entry.name.startswith(".") and entry.is_dir():
                path = Path(entry.path)
                if _inside(path, root):  # a symlink out of the root is not offered
                    out.append(path)
        except OSError:
            continue
    return out


def _display(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return root.name if rel == Path(".") else f"{root.name}/{rel.as_posix()}"


def discover(roots: Iterable[Path]) -> list[KnownDataset]:
    """The datasets under ``roots`` (already resolved folders), in a stable order."""
    found: list[KnownDataset] = []
    seen: set[str] = set()
    for root in roots:
        root = Path(root).resolve()
        if not root.is_dir():
            continue
        for candidate in _candidates(root):
            shown = _display(candidate, root)
            for source, files in _TORCHVISION_LAYOUTS:
                if all((candidate / f).is_file() for f in files):
                    key = f"{source}:{candidate}"
                    if key not in seen:
                        seen.add(key)
                        spec = DatasetSpec(source=source, root=str(candidate), name=f"{shown} ({_SOURCE_LABELS[source]})")
                        found.append(KnownDataset(key, f"{shown} · {_SOURCE_LABELS[source]}", spec))
            classes = _image_classes(candidate)
            if len(classes) >= 2:
                key = f"folder:{candidate}"
                if key not in seen:
                    seen.add(key)
                    spec = DatasetSpec(source="folder", root=str(candidate), name=shown)
                    found.append(KnownDataset(key, f"{shown} · image folder, {len(classes)} classes", spec))
    return found


def known_datasets(roots: Sequence[Path] = ()) -> list[KnownDataset]:
    """The presets first, then what :func:`discover` finds under ``roots``."""
    presets = [KnownDataset(name, f"{name} (preset)", spec) for name, spec in PRESETS.items()]
    return presets + discover(roots)


def resolve_dataset(key: str, roots: Sequence[Path] = (), *, image_size: int | None = None,
                    channels: int | None = None) -> DatasetSpec:
    """The spec of a known dataset by its key. A key that names no dataset under the allowed
    roots is refused, whatever path it spells: only what :func:`discover` offers can be built.
    ``image_size``/``channels`` apply to image folders and torchvision files (presets keep theirs)."""
    for known in known_datasets(roots):
        if known.key == key:
            spec = known.spec
            if known.is_preset:
                return spec
            overrides = {"image_size": image_size, "channels": channels if spec.source == "folder" else None}
            overrides = {k: v for k, v in overrides.items() if v is not None}
            return dataclasses.replace(spec, **overrides) if overrides else spec
    allowed = ", ".join(PRESETS)
    hint = (" or a dataset under the allowed roots (asl-lens library datasets lists them)" if roots
            else "; other data needs an operator to allow its folder in ASL_LENS_DATA_ROOTS")
    raise DataError(f"unknown dataset {key!r}: choose a preset ({allowed}){hint}")


def check_root_allowed(spec: DatasetSpec, roots: Sequence[Path]) -> None:
    """Refuse a spec whose files lie outside the allowed roots. A checkpoint from elsewhere
    carries its dataset's path; building that dataset would read whatever the path names, so
    only paths under ``ASL_LENS_DATA_ROOTS`` are accepted (embedded sources have none)."""
    if spec.root is None:
        return
    try:
        path = Path(spec.root).expanduser().resolve()
    except (OSError, RuntimeError):
        path = None
    if path is None or not any(path == root or root in path.parents for root in (Path(r).resolve() for r in roots)):
        raise DataError(f"the checkpoint's dataset {spec.name!r} reads files at {spec.root!r}, which is not under a folder "
                        "this server allows (ASL_LENS_DATA_ROOTS)")
