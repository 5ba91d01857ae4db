"""Engine benchmarks, every comparison measured side by side in one run.

    python bench/bench_engine.py          # full: 10k x 512 projections
    python bench/bench_engine.py --quick  # small sizes, a smoke run

1. Extraction throughput against the bare ``model(x)`` forward of the same model and batches
   (inputs pre-normalised for the bare loop; ours normalises, hooks two layers, pools, takes
   the softmax and copies out). Runs alternate; medians are compared. Target: ratio >= 0.9.
2. Projection time and trustworthiness on synthetic clustered features (10 Gaussian blobs):
   PCA, t-SNE and UMAP through ``asl_core.engine.projection`` with and without PCA pre-reduction,
   against umap-learn's defaults on the raw features. All trustworthiness values are measured
   the same way: k=5, the same 2000-row stratified subsample, against the raw features.
   numba's JIT is warmed up first (a 4500-row fit: NN-descent included) so UMAP times are steady-state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint
from asl_core.data import Split, normalize
from asl_core.engine.features import extract_features
from asl_core.models import build_model
from asl_core.engine.projection import ProjectionConfig, project, stratified_sample


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
        extract_features(ckpt, split, layers, device="cpu", batch_size=batch)

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


def bench_projection(n: int, dim: int, skip_tsne: bool) -> list[dict]:
    import umap
    from sklearn.manifold import trustworthiness

    X, y = clustered(n, dim)
    rows = stratified_sample(y, 2000, 0)

    def trust(coords: np.ndarray) -> float:
        return float(trustworthiness(X[rows], coords[rows], n_neighbors=5))

    # numba JIT warm-up; above 4096 rows umap-learn switches to NN-descent, which compiles separately
    warm, _ = clustered(4500, 8, seed=1)
    umap.UMAP(n_neighbors=5, n_epochs=5, random_state=0, n_jobs=1).fit_transform(warm)
    runs = [("pca", ProjectionConfig(method="pca")),
            ("tsne, raw (pca_dims=None)", ProjectionConfig(method="tsne", pca_dims=None)),
            ("tsne, pca_dims=50", ProjectionConfig(method="tsne", pca_dims=50)),
            ("umap, raw (pca_dims=None)", ProjectionConfig(method="umap", pca_dims=None)),
            ("umap, pca_dims=50", ProjectionConfig(method="umap", pca_dims=50))]
    if skip_tsne:
        runs = [r for r in runs if not r[0].startswith("tsne")]
    out = []
    for name, cfg in runs:
        t = time.perf_counter()
        p = project(X, y, cfg)
        elapsed = time.perf_counter() - t
        assert p.sample.size == n  # nothing sub-sampled at this size
        out.append({"run": f"asl_core {name}", "seconds": elapsed, "trust": trust(p.coords), "own_trust": p.trustworthiness})
    t = time.perf_counter()
    coords = umap.UMAP(random_state=0).fit_transform(X)  # umap-learn's defaults, raw features
    elapsed = time.perf_counter() - t
    out.append({"run": "umap-learn defaults, raw", "seconds": elapsed, "trust": trust(coords), "own_trust": float("nan")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    p.add_argument("--skip-tsne", action="store_true")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, quick={args.quick}")
    print("\n== extraction throughput on CPU (samples/s, median of alternating runs) ==")
    cases = [("digits_cnn", ["block3", "embedding"], 1797 if args.quick else 7188, 1, 8, 256),
             ("resnet18", ["layer3", "avgpool"], 128 if args.quick else 512, 3, 32, 64)]
    repeats = 3 if args.quick else 7
    print(f"{'arch':<11} {'N':>5} {'input':>8} {'batch':>5} {'layers':<17} {'bare/s':>9} {'ours/s':>9} {'ratio':>6}")
    for case in cases:
        r = bench_extraction(*case, repeats=repeats)
        print(f"{r['arch']:<11} {r['n']:>5} {r['input']:>8} {r['batch']:>5} {r['layers']:<17} "
              f"{r['bare_per_s']:>9.0f} {r['ours_per_s']:>9.0f} {r['ratio']:>6.3f}")
    n, dim = (2000, 128) if args.quick else (10000, 512)
    print(f"\n== projection of {n} x {dim} clustered features (trust: k=5, 2000-row stratified subsample, raw space) ==")
    results = bench_projection(n, dim, args.skip_tsne)
    base = results[-1]["seconds"]
    print(f"{'run':<38} {'seconds':>8} {'vs umap default':>15} {'trust':>7} {'trust (own, std. space)':>24}")
    for r in results:
        print(f"{r['run']:<38} {r['seconds']:>8.2f} {r['seconds'] / base:>14.2f}x {r['trust']:>7.4f} {r['own_trust']:>24.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
