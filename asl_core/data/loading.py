"""Reading a split through ``torch.utils.data.DataLoader``: training, evaluation and extraction.

The loader is fed whole batches of row indices (``batch_size=None`` with a batch sampler as the
sampler), and :class:`SplitBatches` returns ``(x [B, C, H, W], y [B], rows [B])`` for each: an
in-memory split slices its tensor in the main process (no worker: nothing to decode, and the
training batches stay bit-identical to the committed runs); a streamed split decodes each image
of the batch in a worker process (one worker builds one batch, as DataLoader does). Workers come
from the thread budget of :mod:`asl_core.runtime`; on CUDA the batches come in pinned memory for
``non_blocking`` copies.

A batch sampler may yield ``(rows, tag)`` instead of ``rows``; the tag comes back as a fourth item
(training passes the global batch size this rank's slice belongs to).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from asl_core.data.splitting import Split


class SplitBatches(torch.utils.data.Dataset):
    """A split indexed by a batch of rows."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key):
        tag = None
        if isinstance(key, tuple):
            key, tag = key
        rows = torch.as_tensor(key, dtype=torch.long)
        out = (self.split.images(rows), self.split.y[rows], rows)
        return out if tag is None else (*out, tag)


class SequentialBatches:
    """Rows ``0..n-1`` in order, ``batch_size`` at a time."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, self.n, self.batch_size):
            yield torch.arange(start, min(start + self.batch_size, self.n))

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


def loader_workers(split: Split, workers: int | None = None) -> int:
    """Worker processes for ``split``: none in memory; else ``workers``, else the process's thread
    budget (``ASL_LENS_THREADS`` / :func:`asl_core.runtime.current_threads`)."""
    if not split.streamed:
        return 0
    if workers is not None:
        return max(0, int(workers))
    from asl_core.runtime import current_threads

    return max(1, current_threads())


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker needs no intra-op pool of its own


def split_loader(split: Split, batch_size: int = 256, batches: Iterable | None = None, workers: int | None = None,
                 device: torch.device | str | None = None, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``split`` yielding ``(x, y, rows[, tag])`` per batch of ``batches`` (default:
    the rows in order, ``batch_size`` at a time). ``persistent`` keeps the workers between
    epochs (training)."""
    n_workers = loader_workers(split, workers)
    on_cuda = device is not None and torch.device(device).type == "cuda"
    return torch.utils.data.DataLoader(
        SplitBatches(split), batch_size=None, sampler=batches if batches is not None else SequentialBatches(len(split), batch_size),
        num_workers=n_workers, pin_memory=on_cuda, persistent_workers=persistent and n_workers > 0,
        prefetch_factor=2 if n_workers else None, worker_init_fn=_worker_init if n_workers else None,
        # its own generator: a DataLoader otherwise draws its base seed from torch's global stream,
        # which would shift the model's dropout draws against the committed runs
        generator=torch.Generator().manual_seed(0),
    )
