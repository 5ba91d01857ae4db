"""Where and how work runs: device choice, seeding and thread limits.

Below both training and the engine, so that neither imports the other for these.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

from asl_core.errors import UserError


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU. Asking for CUDA without a GPU is a user error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was asked for but no GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (all devices) from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_threads(role: str = "cli") -> int:
    """Threads for one process when ``ASL_LENS_THREADS`` is unset.

    On a shared 2-core machine, torch's default (one thread per core, spinning) made training
    11x slower (95 s against 8.6 s) while one other CPU job ran: the threads wait on each other.
    So a training or analysis command takes half the cores and the app a quarter, leaving room
    for the other; both at least one."""
    cores = os.cpu_count() or 1
    share = 4 if role == "app" else 2
    return max(1, cores // share)


def limit_threads(n: int | None = None, role: str = "cli") -> int:
    """Cap torch's intra-op threads, every BLAS/OpenMP pool (threadpoolctl) and numba's pool
    for this process. ``n`` defaults to ``ASL_LENS_THREADS``, else :func:`default_threads`.
    Returns the count; :func:`current_threads` reads it back (openTSNE takes it as ``n_jobs``)."""
    from threadpoolctl import threadpool_limits

    from asl_core.settings import get_settings

    global _budget
    n = n or get_settings().threads or default_threads(role)
    threadpool_limits(limits=n)
    torch.set_num_threads(n)
    _limit_numba(n)
    _budget = n
    return n


_budget: int | None = None  # what limit_threads set last in this process


def _limit_numba(n: int) -> None:
    """numba reads ``NUMBA_NUM_THREADS`` once, when imported; after that only ``set_num_threads``
    (at most the pool it started with) changes it."""
    import sys

    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(min(n, os.cpu_count() or 1))
        return
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def current_threads() -> int:
    """The thread budget of this process: what :func:`limit_threads` set, else torch's count."""
    return _budget or max(1, torch.get_num_threads())


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR):
    """Raise logger ``name`` to ``level`` for the block (a library's warning the caller already
    says better, or one that is harmless), then restore it."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)
