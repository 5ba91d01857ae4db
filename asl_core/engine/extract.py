"""``asl-lens extract``: a checkpoint's layer features on one split, into the disk cache.

    asl-lens extract checkpoints/baseline.safetensors --split test --layers embedding,block3
    torchrun --nproc_per_node=4 -m asl_core extract CKPT --split train --layers avgpool

The app and ``asl-lens analyze`` then find the entry without running the model again (same
key: content hash, dataset, split, layers, precision). Under torchrun each process extracts a
contiguous shard of the split into the cache (keyed as above plus its shard), and rank 0 merges
the shards in order under the plain key: the same entry, byte for byte in its arrays' order, as
one process writes. Several nodes need a cache folder that every node sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from asl_core import distributed
from asl_core.checkpoint import LoadedCheckpoint, load_checkpoint
from asl_core.data import DatasetSpec, build_splits
from asl_core.distributed import DistContext
from asl_core.engine.cache import (DiskCache, _features_key, cached_features, features_from_arrays,
                                   features_to_arrays)
from asl_core.engine.features import Features, extract_features
from asl_core.engine.options import AMP_CHOICES, InferenceOptions
from asl_core.errors import UserError, cli_entry
from asl_core.models import embedding_layer, list_layers
from asl_core.runtime import limit_threads

SPLITS = ("train", "val", "test")


def merge_shards(shards: list[Features]) -> Features:
    """One :class:`Features` from the ranks' contiguous shards, in rank order."""
    first = shards[0]
    notes = tuple(f"rank {r}: {note}" for r, f in enumerate(shards) for note in f.notes)
    return Features(
        layers={name: np.concatenate([f.layers[name] for f in shards]) for name in first.layers},
        logits=np.concatenate([f.logits for f in shards]), preds=np.concatenate([f.preds for f in shards]),
        confidence=np.concatenate([f.confidence for f in shards]), labels=np.concatenate([f.labels for f in shards]),
        index=np.concatenate([f.index for f in shards]), split=first.split,
        batch_size=min(f.batch_size for f in shards), oom_retries=sum(f.oom_retries for f in shards),
        device=f"{first.device} x{len(shards)}", notes=notes,
    )


def sharded_features(
    cache: DiskCache,
    ckpt: LoadedCheckpoint,
    spec: DatasetSpec,
    split_name: str,
    layers: list[str],
    ctx: DistContext,
    options: InferenceOptions = InferenceOptions(),
) -> Features:
    """:func:`asl_core.engine.cache.cached_features` spread over the ranks of ``ctx``: each rank
    extracts its contiguous slice of the split and writes it to ``cache`` as a shard; after a
    barrier rank 0 merges the shards in rank order under the single-process key and removes them.
    Every rank returns the merged features. A cache hit (on every rank) skips the work."""
    layers = list(dict.fromkeys(layers))
    key = _features_key(ckpt, spec, split_name, layers, options.amp)
    hit = cache.get("features", key)
    if distributed.all_true(hit is not None, ctx):
        return features_from_arrays(*hit)
    split = build_splits(spec).split(split_name)
    if len(split) < ctx.world_size:
        raise UserError(f"the {split_name} split has {len(split)} samples, fewer than the {ctx.world_size} processes")
    part = distributed.shard_slice(len(split), ctx)
    own = split.subset(part)  # a streamed split: this rank decodes only its own files
    feats = extract_features(ckpt, own, layers, options, split_name=split_name)
    shard_keys = [_features_key(ckpt, spec, split_name, layers, options.amp, shard=(r, ctx.world_size))
                  for r in range(ctx.world_size)]
    cache.put("features-shards", shard_keys[ctx.rank], *features_to_arrays(feats))
    distributed.barrier(ctx)
    if ctx.is_main:
        shards = []
        for rank, shard_key in enumerate(shard_keys):
            entry = cache.get("features-shards", shard_key)
            if entry is None:
                raise UserError(f"the shard of rank {rank} is not in the cache ({cache.root}); on several nodes "
                                "the cache folder must be one that every node sees (--cache-dir)")
            shards.append(features_from_arrays(*entry))
        merged = merge_shards(shards)
        if not np.array_equal(merged.index, split.index.numpy()):
            raise UserError("the merged shards do not cover the split in order; extract again")
        cache.put("features", key, *features_to_arrays(merged))
        for shard_key in shard_keys:
            cache.delete("features-shards", shard_key)
    distributed.barrier(ctx)
    entry = cache.get("features", key)
    if entry is None:
        raise UserError(f"the merged features could not be written to the cache ({cache.root})")
    return features_from_arrays(*entry)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--layers", help="comma list (default: the architecture's embedding layer); `--layers list` lists them")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision on CUDA")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format on CUDA")
    p.add_argument("--cache-dir", type=Path, help="cache root (default: $ASL_LENS_CACHE or .cache/)")
    p.add_argument("--threads", type=int, default=None)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with distributed.session(args.device) as (ctx, device):  # torchrun's process group; a no-op without torchrun
        return _run(args, ctx, device)


def _run(args: argparse.Namespace, ctx: DistContext, device: torch.device) -> int:
    limit_threads(args.threads or distributed.threads_per_process(ctx))
    ckpt = load_checkpoint(args.checkpoint)
    if args.layers == "list":
        if ctx.is_main:
            print("\n".join(list_layers(ckpt.model)))
        return 0
    if not ckpt.meta.dataset:
        raise UserError(f"{args.checkpoint.name} does not say which dataset it was trained on")
    layers = [s.strip() for s in (args.layers or embedding_layer(ckpt.meta.arch, list_layers(ckpt.model))).split(",") if s.strip()]
    spec = DatasetSpec.from_dict(ckpt.meta.dataset)
    try:
        options = InferenceOptions(device=device, batch_size=args.batch_size, amp=args.amp,
                                   channels_last=args.channels_last)
    except ValueError as e:
        raise UserError(str(e).replace("batch_size", "--batch-size")) from None
    if ctx.active:
        feats = sharded_features(DiskCache(args.cache_dir), ckpt, spec, args.split, layers, ctx, options)
        if not ctx.is_main:
            return 0
    else:
        feats = cached_features(DiskCache(args.cache_dir), ckpt, spec, args.split, layers, options=options)
    if spec.source == "folder":  # the cached scan: what was skipped, in one line
        from asl_core.data.manifest import scan

        for note in scan(spec.root).notes():
            print(f"data: {note}")
    dims = ", ".join(f"{name} {arr.shape[1]}" for name, arr in feats.layers.items())
    print(f"{args.checkpoint.name}: {len(feats)} {args.split} samples; {dims}; accuracy {float(feats.correct.mean()):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
