"""Engine benchmarks, every comparison measured side by side in one run.

    python bench/bench_engine.py          # full: 10k and 100k x 512 projections
    python bench/bench_engine.py --quick  # small sizes, a smoke run
    python bench/bench_engine.py --skip-extraction --sizes 10000

1. Extraction throughput against the bare ``model(x)`` forward of the same model and batches
   (inputs pre-normalised for the bare loop; ours normalises, hooks two layers, pools, takes
   the softmax and copies out). Runs alternate; medians are compared. Target: ratio >= 0.9.
2. The first UMAP and t-SNE of 500 points in a fresh process (as after a server start), with
   numba's on-disk cache empty and then warm.
3. Projection time and trustworthiness on synthetic clustered features (10 Gaussian blobs),
   at 10k and 100k points (`--sizes`):
   PCA, UMAP (ours; again with only ``min_dist`` changed, reusing the k-NN graph; again with
   umap-learn's epoch count) and t-SNE (openTSNE; scikit-learn's, the one before, at <= 10k)
   through ``asl_core.engine.projection``, against umap-learn's defaults on the raw features.
   All trustworthiness values are measured the same way: k=5, the same 2000-row stratified
   subsample, against the raw features. numba's code is compiled or loaded first
   (``projection.warm_up``), so UMAP times are steady-state.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint
from asl_core.data import Split, normalize
from asl_core.engine.features import extract_features
from asl_core.engine.options import InferenceOptions
from asl_core.models import build_model
from asl_core.engine.projection import ProjectionConfig, project, stratified_sample, warm_up


def bench_extraction(arch: str, layers: list[str], n: int, channels: int, size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(arch, 10, in_channels=channels, small_input=True).eval()
    meta = CheckpointMeta(arch=arch, num_classes=10, class_names=tuple(map(str, range(10))),
                          input_shape=(channels, size, size), mean=(0.5,) * channels, std=(0.25,) * channels)
    ckpt = LoadedCheckpoint(model, meta)
    x = torch.rand(n, channels, size, size)
    split = Split(x=x, y=torch.randint(0, 10, (n,)), index=torch.arange(n))
    xn = normalize(x, meta.mean, meta.std)

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, n, batch):
                model(xn[s : s + batch])

    def ours() -> None:
        extract_features(ckpt, split, layers, InferenceOptions(device="cpu", batch_size=batch))

    bare(), ours()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("ours", ours)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    tb, to = statistics.median(times["bare"]), statistics.median(times["ours"])
    return {"arch": arch, "n": n, "input": f"{channels}x{size}x{size}", "batch": batch, "layers": ",".join(layers),
            "bare_per_s": n / tb, "ours_per_s": n / to, "ratio": tb / to}


def clustered(n: int, dim: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in ``classes`` Gaussian blobs (centres ~ N(0, 1.5^2 I), unit noise) in ``dim`` dims."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(scale=1.5, size=(classes, dim))
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def bench_projection(n: int, dim: int, skip_tsne: bool, sklearn_tsne: bool) -> list[dict]:
    """Every row on the same features, one after another in this process; umap-learn's defaults
    last, the reference of the ratios. numba's code is compiled (or loaded) before any row."""
    import dataclasses

    import umap
    from sklearn.manifold import trustworthiness

    from asl_core.engine import neighbors

    X, y = clustered(n, dim)
    rows = stratified_sample(y, 2000, 0)

    def trust(coords: np.ndarray) -> float:
        return float(trustworthiness(X[rows], coords[rows], n_neighbors=5))

    warm_up()
    neighbors.clear_memo()
    umap_cfg = ProjectionConfig(method="umap", max_points=n)
    runs = [("pca", ProjectionConfig(method="pca", max_points=n)),
            ("umap (pca_dims=50, 200 epochs)", umap_cfg),
            ("umap, layout change only (k-NN reused)", dataclasses.replace(umap_cfg, min_dist=0.3)),
            ("umap, umap-learn's epochs", dataclasses.replace(umap_cfg, umap_epochs=None)),
            ("tsne (openTSNE, pca_dims=50)", ProjectionConfig(method="tsne", max_points=n))]
    if skip_tsne:
        runs = [r for r in runs if not r[0].startswith("tsne")]
    out = []
    for name, cfg in runs:
        t = time.perf_counter()
        p = project(X, y, cfg)
        elapsed = time.perf_counter() - t
        assert p.sample.size == n  # nothing sub-sampled at this size
        out.append({"run": f"asl_core {name}", "seconds": elapsed, "trust": trust(p.coords), "own_trust": p.trustworthiness})
    if sklearn_tsne and not skip_tsne:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from sklearn.preprocessing import StandardScaler

        t = time.perf_counter()
        Z = PCA(50, random_state=0).fit_transform(StandardScaler().fit_transform(X))
        coords = TSNE(init="pca", random_state=0).fit_transform(Z)
        out.append({"run": "scikit-learn TSNE (before), pca_dims=50", "seconds": time.perf_counter() - t,
                    "trust": trust(coords), "own_trust": float("nan")})
    t = time.perf_counter()
    coords = umap.UMAP(random_state=0).fit_transform(X)  # umap-learn's defaults, raw features
    elapsed = time.perf_counter() - t
    out.append({"run": "umap-learn defaults, raw", "seconds": elapsed, "trust": trust(coords), "own_trust": float("nan")})
    return out


FIRST_PROJECTION = """
import time, numpy as np
t0 = time.perf_counter()
from asl_core.engine.projection import ProjectionConfig, project
from asl_core.runtime import limit_threads
limit_threads(role="app")  # as the app does (ui.page.setup)
rng = np.random.default_rng(0)
X = (rng.normal(size=(500, 64)) + 4 * rng.normal(size=(10, 64))[rng.integers(0, 10, 500)]).astype(np.float32)
y = rng.integers(0, 10, 500)
t1 = time.perf_counter()
p = project(X, y, ProjectionConfig(method="{method}"))
print(time.perf_counter() - t1, time.perf_counter() - t0, p.trustworthiness)
"""


def first_projection(method: str, numba_dir: Path, threads: int | None = None) -> tuple[float, float, float]:
    """(seconds of the first projection, seconds with imports, trustworthiness) of 500 points in a
    fresh process, as after a server start; ``numba_dir`` is numba's on-disk cache."""
    import os
    import subprocess

    env = dict(os.environ, NUMBA_CACHE_DIR=str(numba_dir), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if threads:
        env["ASL_LENS_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", FIRST_PROJECTION.format(method=method)], env=env, capture_output=True,
                         text=True, timeout=1800, check=True)
    first, total, trust = map(float, out.stdout.split())
    return first, total, trust


def bench_first_projection() -> list[tuple[str, float, float, float]]:
    """First UMAP/t-SNE of 500 points in a new process: numba's cache empty (as before this
    change: every process compiled), then warm (after ``asl-lens demo``)."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as cold:
        rows.append(("umap, numba cache empty (every start before)", *first_projection("umap", Path(cold))))
        rows.append(("umap, numba cache warm (after asl-lens demo)", *first_projection("umap", Path(cold))))
        rows.append(("tsne (openTSNE: nothing to compile)", *first_projection("tsne", Path(cold))))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    p.add_argument("--skip-tsne", action="store_true")
    p.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[10000, 100000],
                   help="projection sizes (default 10000,100000)")
    p.add_argument("--skip-extraction", action="store_true")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, quick={args.quick}")
    if not args.skip_extraction:
        extraction(args)
    projections(args)
    return 0


def extraction(args) -> None:
    print("\n== extraction throughput on CPU (samples/s, median of alternating runs) ==")
    cases = [("digits_cnn", ["block3", "embedding"], 1797 if args.quick else 7188, 1, 8, 256),
             ("resnet18", ["layer3", "avgpool"], 128 if args.quick else 512, 3, 32, 64)]
    repeats = 3 if args.quick else 7
    print(f"{'arch':<11} {'N':>5} {'input':>8} {'batch':>5} {'layers':<17} {'bare/s':>9} {'ours/s':>9} {'ratio':>6}")
    for case in cases:
        r = bench_extraction(*case, repeats=repeats)
        print(f"{r['arch']:<11} {r['n']:>5} {r['input']:>8} {r['batch']:>5} {r['layers']:<17} "
              f"{r['bare_per_s']:>9.0f} {r['ours_per_s']:>9.0f} {r['ratio']:>6.3f}")


def projections(args) -> None:
    from asl_core.runtime import limit_threads

    # the app's thread budget (openTSNE's n_jobs follows it): on a busy machine spinning threads
    # made openTSNE 10x slower at n_jobs=2 than at 1 (see docs/BENCHMARKS.md)
    print(f"\nprojection threads: {limit_threads(role='app')} (the app's budget on {os.cpu_count()} cores)")
    print("\n== first projection of 500 points in a fresh process (as after a server start) ==")
    print(f"{'run':<48} {'first s':>8} {'with imports':>13} {'trust':>7}")
    for name, first, total, tr in bench_first_projection():
        print(f"{name:<48} {first:>8.2f} {total:>13.2f} {tr:>7.4f}", flush=True)
    sizes = [(2000, 128)] if args.quick else [(n, 512) for n in args.sizes]
    for n, dim in sizes:
        print(f"\n== projection of {n} x {dim} clustered features (trust: k=5, 2000-row stratified subsample, raw space) ==",
              flush=True)
        results = bench_projection(n, dim, args.skip_tsne, sklearn_tsne=n <= 10000)
        base = results[-1]["seconds"]
        print(f"{'run':<46} {'seconds':>8} {'vs umap default':>15} {'trust':>7} {'trust (own, std. space)':>24}")
        for r in results:
            print(f"{r['run']:<46} {r['seconds']:>8.2f} {r['seconds'] / base:>14.2f}x {r['trust']:>7.4f} "
                  f"{r['own_trust']:>24.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
