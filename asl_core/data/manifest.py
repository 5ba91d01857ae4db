"""The one scan of an image folder: its classes and its files, cached by the folder's content.

A class is a direct, non-hidden sub-folder of the root with at least one image file directly in
it (:func:`class_dirs`; ``roots.py`` discovers datasets with the same rule); its images are every
image file below it, as torchvision's ``ImageFolder`` walks them. :func:`scan` lists them with
their sizes and modification times and checks each one's header (and, for JPEG/PNG, that the
file is not cut short), so bad files are skipped, counted and named instead of aborting a build.

The manifest is stored under ``<cache>/manifests/`` keyed by a signature of the folder tree
(the path and modification time of every directory: adding, removing or renaming a file changes
its directory's), so a second start reads one file instead of walking and opening every image.
A file rewritten in place under the same name keeps the signature; delete the manifest (or touch
its folder) after doing that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asl_core.data.spec import IMAGE_EXTENSIONS
from asl_core.errors import DataError

log = logging.getLogger(__name__)

MANIFEST_VERSION = "manifest/1"
NAMED_SKIPS = 5  # skipped files named in a one-line note (all of them are in Manifest.skipped)


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _has_image(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    if is_image_name(entry.name) and entry.is_file():
                        return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


def class_dirs(root: str | Path) -> list[str]:
    """Names of the class folders of ``root`` (sorted): direct sub-folders with an image in them."""
    try:
        with os.scandir(root) as it:
            subs = [e for e in it if not e.name.startswith(".") and _is_dir(e)]
    except OSError:
        return []
    return sorted(e.name for e in subs if _has_image(e.path))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


@dataclass(frozen=True)
class Manifest:
    """The images of one folder. ``paths`` are relative to ``root`` (POSIX), in class then path
    order; ``labels`` index ``class_names``; ``skipped`` pairs a relative path with the reason."""

    root: str
    class_names: tuple[str, ...]
    paths: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    mtimes: np.ndarray
    skipped: tuple[tuple[str, str], ...]
    signature: str
    from_cache: bool = False

    def __len__(self) -> int:
        return int(len(self.paths))

    def notes(self) -> tuple[str, ...]:
        """One line naming what was skipped (empty when nothing was)."""
        if not self.skipped:
            return ()
        total = len(self.paths) + len(self.skipped)
        named = "; ".join(f"{p} ({why})" for p, why in self.skipped[:NAMED_SKIPS])
        more = f"; and {len(self.skipped) - NAMED_SKIPS} more" if len(self.skipped) > NAMED_SKIPS else ""
        return (f"skipped {len(self.skipped)} of {total} files that are not readable images: {named}{more}",)


def _walk(folder: str) -> tuple[list[tuple[str, int]], list[os.DirEntry]]:
    """Every directory below ``folder`` (itself included) with its mtime, and every image file entry."""
    dirs, files, stack = [], [], [folder]
    while stack:
        current = stack.pop()
        try:
            dirs.append((current, os.stat(current).st_mtime_ns))
            with os.scandir(current) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        stack.append(entry.path)
                    elif is_image_name(entry.name):
                        files.append(entry)
        except OSError:
            continue
    return dirs, files


def signature(root: str | Path) -> str:
    """A key for the folder's content: the paths and mtimes of its class folders' directories."""
    root = os.path.realpath(root)
    h = hashlib.sha256(f"{MANIFEST_VERSION}\0{root}\0{os.stat(root).st_mtime_ns}".encode())
    for name in class_dirs(root):
        for path, mtime in sorted(_walk(os.path.join(root, name))[0]):
            h.update(f"\0{os.path.relpath(path, root)}\0{mtime}".encode())
    return h.hexdigest()


def check_image(path: str, size: int) -> str | None:
    """Why ``path`` cannot be used as an image, or ``None``. Reads its header and its last bytes
    (a JPEG ends with the EOI marker, a PNG with its IEND chunk; a cut-off file lacks them)."""
    from PIL import Image, UnidentifiedImageError

    if size == 0:
        return "zero bytes"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                fmt = im.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "too many pixels (decompression-bomb guard)"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"unreadable ({exc.__class__.__name__})"
    if w < 1 or h < 1:
        return "empty image"
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        return f"claims {w}x{h} pixels (decompression-bomb guard)"
    if fmt in ("JPEG", "PNG"):
        try:
            with open(path, "rb") as f:
                f.seek(max(0, size - 64))
                tail = f.read()
        except OSError as exc:
            return f"unreadable ({exc.__class__.__name__})"
        if fmt == "JPEG" and b"\xff\xd9" not in tail.rstrip(b"\x00"):
            return "truncated (no end-of-image marker)"
        if fmt == "PNG" and b"IEND" not in tail:
            return "truncated (no IEND chunk)"
    return None


def _build(root: str, sig: str) -> Manifest:
    names = class_dirs(root)
    if not names:
        raise DataError(f"no images found in {root}: expected one sub-folder of images per class")
    paths, labels, sizes, mtimes, skipped = [], [], [], [], []
    kept_names = []
    for name in names:
        _, entries = _walk(os.path.join(root, name))
        label = len(kept_names)
        kept = 0
        for entry in sorted(entries, key=lambda e: e.path):
            rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
            try:
                st = entry.stat()
            except OSError as exc:
                skipped.append((rel, f"unreadable ({exc.__class__.__name__})"))
                continue
            why = check_image(entry.path, st.st_size)
            if why is not None:
                skipped.append((rel, why))
                continue
            paths.append(rel)
            labels.append(label)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
            kept += 1
        if kept:
            kept_names.append(name)
    return Manifest(root=root, class_names=tuple(kept_names), paths=np.asarray(paths, dtype=str),
                    labels=np.asarray(labels, dtype=np.int64), sizes=np.asarray(sizes, dtype=np.int64),
                    mtimes=np.asarray(mtimes, dtype=np.int64), skipped=tuple(skipped), signature=sig)


def _store_path(sig: str) -> Path:
    from asl_core.settings import get_settings

    return get_settings().cache_dir / "manifests" / f"{sig[:40]}.npz"


def _save(m: Manifest, path: Path) -> None:
    arrays = dict(paths=m.paths, labels=m.labels, sizes=m.sizes, mtimes=m.mtimes,
                  class_names=np.asarray(m.class_names, dtype=str),
                  skipped=np.asarray(m.skipped, dtype=str).reshape(-1, 2), root=np.asarray(m.root))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a rescan next time, not correctness
        log.warning("could not store the manifest of %s: %s", m.root, exc)


def _load(path: Path, sig: str) -> Manifest | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Manifest(root=str(z["root"]), class_names=tuple(str(c) for c in z["class_names"]), paths=z["paths"],
                            labels=z["labels"], sizes=z["sizes"], mtimes=z["mtimes"],
                            skipped=tuple((str(a), str(b)) for a, b in z["skipped"]), signature=sig, from_cache=True)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("manifest %s is damaged (%s); scanning again", path.name, exc)
        return None


def remember(m: Manifest) -> None:
    """Store a freshly walked manifest for the next start (a cached one is there already)."""
    if not m.from_cache:
        _save(m, _store_path(m.signature))


def scan(root: str | Path, use_cache: bool = True, store: bool = True) -> Manifest:
    """The manifest of ``root``: from the cache when the folder's signature matches, else walked
    and checked, and stored unless ``store`` is false (:func:`asl_core.data.build_splits` stores it
    only once the folder made a dataset, so that a refused folder leaves nothing behind)."""
    real = os.path.realpath(root)
    if not os.path.exists(real):
        raise DataError(f"image folder not found: {root}")
    if not os.path.isdir(real):
        raise DataError(f"not a folder: {root}")
    sig = signature(real)
    path = _store_path(sig)
    if use_cache:
        cached = _load(path, sig)
        if cached is not None and cached.root == real:
            return cached
    m = _build(real, sig)
    if use_cache and store:
        _save(m, path)
    for note in m.notes():  # the CLIs print it, the app shows it, checkpoints record it
        log.info("%s: %s", real, note)
    return m
