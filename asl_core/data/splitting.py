"""Splits: a split is an array of indices into its source.

:func:`build_splits` turns a :class:`DatasetSpec` into balanced validation/test splits and a
long-tailed training split (METHODS.md section 3), deterministic in ``spec.seed``. Only indices
and labels are computed here. An in-memory source's splits are then materialised and corrupted
as one tensor each, exactly as before (the committed numbers depend on it); an image folder's
splits stay lazy (``Split.x`` is ``None``): images are decoded, resized and corrupted per sample
when a :func:`asl_core.data.loading.split_loader` asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from asl_core.data.corruption import corrupt, corrupt_one
from asl_core.data.sources import Source, open_source
from asl_core.data.spec import DatasetSpec
from asl_core.errors import DataError

STATS_SAMPLE = 1000  # training images a streamed split's mean/std are measured on


@dataclass(frozen=True)
class Split:
    """One split. ``y``: ``[N]`` long; ``index``: ``[N]`` position of each sample in its source;
    ``x``: ``[N, C, H, W]`` float in [0, 1] when in memory, ``None`` when streamed from
    ``source`` (then corrupted per sample as ``spec`` says)."""

    x: torch.Tensor | None
    y: torch.Tensor
    index: torch.Tensor
    source: Source | None = field(default=None, repr=False, compare=False)
    spec: DatasetSpec | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def streamed(self) -> bool:
        return self.x is None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self.x is not None:
            return tuple(self.x.shape[1:])  # type: ignore[return-value]
        return self.source.image_shape  # type: ignore[union-attr]

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    def image(self, row: int) -> torch.Tensor:
        """The image of one row, ``[C, H, W]`` (decoded only this one when streamed)."""
        if self.x is not None:
            return self.x[row]
        x = self.source.load(int(self.index[row]))  # type: ignore[union-attr]
        return corrupt_one(x, self.spec, int(self.index[row])) if self.spec is not None else x

    def images(self, rows) -> torch.Tensor:
        """``[len(rows), C, H, W]`` for the given rows."""
        if self.x is not None:
            return self.x[torch.as_tensor(rows, dtype=torch.long)]
        rows = torch.as_tensor(rows, dtype=torch.long).tolist()
        if not rows:
            return torch.empty((0, *self.image_shape))
        return torch.stack([self.image(r) for r in rows])

    def subset(self, rows) -> Split:
        """The split of ``rows`` (a slice, an index tensor or a boolean mask), still lazy when streamed."""
        x = None if self.x is None else self.x[rows]
        return Split(x=x, y=self.y[rows], index=self.index[rows], source=self.source, spec=self.spec)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.y, minlength=num_classes).tolist()


@dataclass(frozen=True)
class Splits:
    spec: DatasetSpec
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    # (mean, std) per channel of the training split; ``None``: measured on first use (a streamed
    # split decodes images for it, so extraction, which takes the model's own, never does)
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)

    @cached_property
    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.stats if self.stats is not None else _stream_stats(self.train)

    @property
    def mean(self) -> tuple[float, ...]:
        return self._stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self._stats[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def streamed(self) -> bool:
        return self.train.streamed

    def smallest_classes(self, k: int) -> list[int]:
        """The ``k`` classes with the fewest training samples (lower class index first on ties)."""
        counts = self.train.class_counts(self.num_classes)
        return sorted(range(len(counts)), key=lambda c: (counts[c], c))[:k]

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)


def long_tail_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """Training samples kept per class: ``round(n_max * rho ** (-k / (C - 1)))``, at least 1."""
    if num_classes == 1:
        return [n_max]
    return [max(1, int(round(n_max * imbalance ** (-k / (num_classes - 1))))) for k in range(num_classes)]


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel standardisation of a ``[N, C, H, W]`` batch (on the batch's device)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _auto_per_class(value: int | None, smallest: int) -> int:
    return value if value is not None else max(1, int(0.15 * smallest))


def build_splits(spec: DatasetSpec) -> Splits:
    """Build train/val/test from ``spec``. Val and test are balanced; train follows the
    long-tail formula. Deterministic in ``spec.seed``."""
    source = open_source(spec)
    labels, class_names, is_test = source.labels, source.class_names, source.is_test
    num_classes = len(class_names)
    rng = np.random.default_rng(spec.seed)
    pool_idx, val_idx, test_idx = [], [], []
    for c in range(num_classes):
        if is_test is None:
            idx = np.flatnonzero(labels == c)
            test_src = None
        else:
            idx = np.flatnonzero((labels == c) & ~is_test)
            test_src = rng.permutation(np.flatnonzero((labels == c) & is_test))
        pool_idx.append(rng.permutation(idx))
        if test_src is not None:
            test_idx.append(test_src)
    counts = [len(p) for p in pool_idx]
    if min(counts) == 0:
        empty = class_names[counts.index(0)]
        raise DataError(f"class {empty!r} has no samples")
    smallest = min(counts) if is_test is None else min(counts + [len(t) for t in test_idx])
    n_val = _auto_per_class(spec.val_per_class, smallest)
    n_test = _auto_per_class(spec.test_per_class, smallest)
    train_pool = []
    for c in range(num_classes):
        p = pool_idx[c]
        if is_test is None:
            need = n_val + n_test + 1
            if len(p) < need:
                raise DataError(
                    f"class {class_names[c]!r} has {len(p)} samples; val ({n_val}) + test ({n_test}) + 1 training sample need {need}"
                )
            val_idx.append(p[:n_val])
            test_idx.append(p[n_val : n_val + n_test])
            train_pool.append(p[n_val + n_test :])
        else:
            if len(p) < n_val + 1 or len(test_idx[c]) < n_test:
                raise DataError(f"class {class_names[c]!r} has too few samples for the requested val/test sizes")
            val_idx.append(p[:n_val])
            test_idx[c] = test_idx[c][:n_test]
            train_pool.append(p[n_val:])
    # n_max: the cap, or the smallest pool so that the formula holds for every class
    n_max = spec.samples_per_class or min(len(p) for p in train_pool)
    keep = long_tail_counts(n_max, num_classes, spec.imbalance)
    notes = []
    train_idx = []
    for c in range(num_classes):
        if keep[c] > len(train_pool[c]):
            notes.append(f"class {class_names[c]!r}: asked for {keep[c]} training samples, only {len(train_pool[c])} available")
        train_idx.append(train_pool[c][: keep[c]])

    if source.in_memory:
        return _materialise(spec, source, labels, class_names, train_idx, val_idx, test_idx, notes)
    from asl_core.data.manifest import remember

    remember(source.manifest)  # the folder made a dataset: the next start reuses its scan
    made = {name: Split(x=None, y=torch.from_numpy(labels[idx]).long(), index=torch.from_numpy(idx).long(), source=source,
                        spec=spec)
            for name, idx in (("train", np.concatenate(train_idx)), ("val", np.concatenate(val_idx)),
                              ("test", np.concatenate(test_idx)))}
    return Splits(spec=spec, class_names=class_names, notes=tuple(source.notes) + tuple(notes), **made)


def _materialise(spec, source, labels, class_names, train_idx, val_idx, test_idx, notes) -> Splits:
    """The in-memory splits, each corrupted as one tensor with one generator (unchanged since the
    committed results)."""
    images = source.images
    gen = torch.Generator().manual_seed(spec.seed + 1)
    made = {}
    for offset, (name, parts) in enumerate((("train", train_idx), ("val", val_idx), ("test", test_idx))):
        idx = np.concatenate(parts)
        x = torch.from_numpy(np.ascontiguousarray(images[idx]))
        gen.manual_seed(spec.seed * 1000 + offset)
        x = corrupt(x, spec, gen)
        made[name] = Split(x=x.contiguous(), y=torch.from_numpy(labels[idx]).long(), index=torch.from_numpy(idx).long())
    x_train = made["train"].x
    mean = tuple(float(v) for v in x_train.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in x_train.std(dim=(0, 2, 3)))
    return Splits(spec=spec, class_names=class_names, notes=tuple(notes), stats=(mean, std), **made)


def _stream_stats(train: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of a streamed training split, on up to ``STATS_SAMPLE`` evenly spaced
    images (decoded through the loader's workers)."""
    from asl_core.data.loading import split_loader

    n = len(train)
    rows = np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(np.int64))
    total = sq = count = 0.0
    for x, _, _ in split_loader(train.subset(torch.from_numpy(rows)), batch_size=64):
        x = x.double()
        total = total + x.sum(dim=(0, 2, 3))
        sq = sq + (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (sq / count - mean * mean).clamp_min(0) * count / max(count - 1, 1)
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-3) for v in var.sqrt())
