"""First UMAP of 10,000 points in a fresh process (issue 20's row: under 5 s of compilation and
search together). Prints the seconds of the neighbour search and of the whole projection, the
numba cache warm (run it twice: the first run fills the cache)."""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    t0 = time.perf_counter()
    from asl_core.engine import neighbors
    from asl_core.engine.projection import ProjectionConfig, project
    from asl_core.runtime import limit_threads

    limit_threads(role="app")
    neighbors.enable_numba_cache()
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    Z = (rng.normal(size=(n, 64)) + labels[:, None] * 0.5).astype(np.float32)
    t2 = time.perf_counter()
    neighbors.knn_graph(Z, 15)
    t3 = time.perf_counter()
    project(Z, labels, ProjectionConfig(method="umap", max_points=n))
    t4 = time.perf_counter()
    print(f"n={n}: imports {t1 - t0:.1f} s · neighbour search {t3 - t2:.1f} s · whole UMAP (search memoised, layout, "
          f"trustworthiness) {t4 - t3:.1f} s · search + UMAP {t4 - t2:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
