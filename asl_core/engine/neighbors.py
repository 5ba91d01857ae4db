"""The k-nearest-neighbour graph that t-SNE and UMAP both start from, computed once per data.

Finding the neighbours is the part of a UMAP or t-SNE run that depends on the data alone; the
layout (``min_dist``, the seed of the layout, the number of epochs) does not change it. So the
graph is memoised in this process by the content of the data, the metric and ``k``: moving a
slider that only changes the layout reuses it. The graph is computed with a fixed seed, so a
projection is the same whether its graph came from the memo or not.

    idx, dist = knn_graph(Z, k=15)   # [n, k] int32 / float32, each row starts with the point itself

Exact below :data:`EXACT_BELOW` rows, or ``EXACT_PER_K * k`` (scikit-learn, brute force), NN-descent (pynndescent,
umap-learn's own choice of parameters) above. umap-learn's numba code is kept on disk
(:func:`enable_numba_cache`); pynndescent's is compiled again in each process despite that cache
(40+ s), which is why the exact cutoff sits at 20,000 rows.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

# Exact below 20,000 rows. umap-learn's own threshold is 4,096, but pynndescent's numba code is
# compiled again in every process whatever numba's cache holds (measured, issue 20: NN-descent on
# 10k x 64 took 214 s in a fresh process and 106 s in the next one with the cache filled, on 2 busy
# cores; 41-45 s on a quiet machine), so a server's first UMAP above 4,096 points waited that long.
# Exact search on 10k x 64 takes ~3 s (2.5-3.4 s on one busy core), 20k ~12 s: cheaper up to here.
EXACT_BELOW = 20_000
# Exact search costs ~n^2 (a BLAS product), NN-descent ~n*k: at 10k x 50 dims, one thread, exact
# took 2.7 s for k = 16 and 3.0 s for k = 91, NN-descent 0.8 s and 5.8 s. So exact also wins
# below EXACT_PER_K * k rows (t-SNE's k = 91: below 18,200 rows).
EXACT_PER_K = 200
KNN_SEED = 0  # the graph never depends on the layout's seed
MEMO_ENTRIES = 8

_lock = threading.Lock()
_memo: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_stats = {"hits": 0, "misses": 0}
_numba_ready = False

# modules whose numba functions umap-learn compiles without ``cache=True``
_UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances", "umap.sparse",
                 "umap.aligned_umap")


def numba_cache_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` when set, else ``numba/`` under the engine cache (``ASL_LENS_CACHE``)."""
    from asl_core.settings import get_settings

    env = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    return Path(env) if env else get_settings().cache_dir / "numba"


def enable_numba_cache() -> Path:
    """Keep numba's compiled code for umap-learn and pynndescent on disk, across processes.

    Sets ``NUMBA_CACHE_DIR`` before either is imported (pynndescent caches its own functions
    then), and switches on caching for umap-learn's functions, which it compiles without
    ``cache=True``: a new server process then loads machine code instead of spending 15-20 s
    compiling it. Idempotent; returns the folder. Call it before importing ``umap``."""
    global _numba_ready
    with _lock:
        folder = numba_cache_dir()
        if _numba_ready:
            return folder
        os.environ.setdefault("NUMBA_CACHE_DIR", str(folder))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only cache costs compile time, not correctness
            pass
        import importlib

        import numba
        from numba.core.caching import NullCache
        from numba.core.registry import CPUDispatcher

        if not numba.config.CACHE_DIR:  # numba was imported before the variable was set
            numba.config.CACHE_DIR = str(folder)
        import umap  # noqa: F401  (imports pynndescent, whose functions cache themselves)

        for name in _UMAP_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher) and isinstance(obj._cache, NullCache):
                    obj.enable_caching()
        _numba_ready = True
        return folder


def data_key(Z: np.ndarray) -> str:
    """sha256 of the array's shape, dtype and bytes."""
    Z = np.ascontiguousarray(Z)
    h = hashlib.sha256(f"{Z.shape}|{Z.dtype}".encode())
    h.update(memoryview(Z).cast("B"))
    return h.hexdigest()


def memo_info() -> dict[str, int]:
    """Hits and misses of the in-process graph memo since the last :func:`clear_memo`."""
    with _lock:
        return dict(_stats, entries=len(_memo))


def clear_memo() -> None:
    with _lock:
        _memo.clear()
        _stats.update(hits=0, misses=0)


def knn_graph(Z: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """``Z`` ``[n, D]`` -> (indices ``[n, k]`` int32, distances ``[n, k]`` float32), sorted by
    distance, each row's first entry the point itself. Memoised by (content, metric, k); the
    arrays returned are read-only (shared with the memo)."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n = Z.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for {n} points, got {k}")
    key = (data_key(Z), metric, int(k))
    with _lock:
        if key in _memo:
            _memo.move_to_end(key)
            _stats["hits"] += 1
            return _memo[key]
        _stats["misses"] += 1
    idx, dist = _exact(Z, k, metric) if n < max(EXACT_BELOW, EXACT_PER_K * k) else _nn_descent(Z, k, metric)
    idx, dist = idx.astype(np.int32), dist.astype(np.float32)
    idx.flags.writeable = False
    dist.flags.writeable = False
    with _lock:
        _memo[key] = (idx, dist)
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return idx, dist


def _exact(Z: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(Z).kneighbors(Z)
    # a duplicate of a point can come before the point itself: put the point first, as umap-learn does
    rows = np.arange(Z.shape[0])
    not_first = idx[:, 0] != rows
    if not_first.any():
        for r in np.flatnonzero(not_first):
            where = np.flatnonzero(idx[r] == r)
            j = where[0] if where.size else k - 1
            idx[r, 1 : j + 1], dist[r, 1 : j + 1] = idx[r, :j].copy(), dist[r, :j].copy()
            idx[r, 0], dist[r, 0] = r, 0.0
    return idx, dist


def _nn_descent(Z: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    enable_numba_cache()
    from pynndescent import NNDescent

    n = Z.shape[0]
    # umap-learn's parameters for the same call (umap_.nearest_neighbors)
    n_trees = min(64, 5 + int(round(n**0.5 / 20.0)))
    n_iters = max(5, int(round(np.log2(n))))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        index = NNDescent(Z, n_neighbors=k, metric=metric, random_state=KNN_SEED, n_trees=n_trees, n_iters=n_iters,
                          max_candidates=60, low_memory=True, n_jobs=1, compressed=False)
    idx, dist = index.neighbor_graph
    return idx, dist
