"""Runs of the experiment in parallel processes. Every run seeds itself and trains with a fixed
thread count, so results are the same for any number of workers; only the wall time changes.
(Written here rather than with a job library: the standard library's process pool with the
'spawn' start method is all it needs, and torch is not fork-safe once its thread pools exist.)"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from typing import Any

import torch

from asl_core.data import DatasetSpec, Splits, build_splits


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


@lru_cache(maxsize=4)
def worker_splits(spec: DatasetSpec) -> Splits:
    """One process builds a dataset's splits once."""
    return build_splits(spec)


class Workers:
    """A process pool kept for a whole experiment (spawning a process and importing torch costs
    seconds; one pool serves the search and the seeds). ``Workers(1)`` runs in this process."""

    def __init__(self, workers: int = 1, threads: int = 1):
        self.workers, self.threads = workers, threads
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(self.threads,))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: Callable[[], None] | None = None) -> list[Any]:
        """``[fn(job) for job in jobs]`` in order (on the pool when there is one)."""
        if self.pool is None or len(jobs) <= 1:
            out = []
            for job in jobs:
                out.append(fn(job))
                if on_done:
                    on_done()
            return out
        results: list[Any] = [None] * len(jobs)
        futures = {self.pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done:
                on_done()
        return results


SERIAL = Workers(1)
