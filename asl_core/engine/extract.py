"""``asl-lens extract``: a checkpoint's layer features on one split, into the disk cache.

    asl-lens extract checkpoints/baseline.safetensors --split test --layers embedding,block3

The app and ``asl-lens analyze`` then find the entry without running the model again (same
key: content hash, dataset, split, layers, precision).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asl_core.checkpoint import load_checkpoint
from asl_core.data import DatasetSpec
from asl_core.engine.cache import DiskCache, cached_features
from asl_core.errors import UserError, cli_entry
from asl_core.models import embedding_layer, list_layers
from asl_core.runtime import limit_threads

SPLITS = ("train", "val", "test")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--layers", help="comma list (default: the architecture's embedding layer); `--layers list` lists them")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision on CUDA")
    p.add_argument("--cache-dir", type=Path, help="cache root (default: $ASL_LENS_CACHE or .cache/)")
    p.add_argument("--threads", type=int, default=None)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    if args.layers == "list":
        print("\n".join(list_layers(ckpt.model)))
        return 0
    if not ckpt.meta.dataset:
        raise UserError(f"{args.checkpoint.name} does not say which dataset it was trained on")
    layers = [s.strip() for s in (args.layers or embedding_layer(ckpt.meta.arch)).split(",") if s.strip()]
    spec = DatasetSpec.from_dict(ckpt.meta.dataset)
    feats = cached_features(DiskCache(args.cache_dir), ckpt, spec, args.split, layers, device=args.device,
                            batch_size=args.batch_size, amp=args.amp)
    dims = ", ".join(f"{name} {arr.shape[1]}" for name, arr in feats.layers.items())
    print(f"{args.checkpoint.name}: {len(feats)} {args.split} samples; {dims}; accuracy {float(feats.correct.mean()):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
