"""GPU throughput: ResNet-18 at 224 px, images/s for extraction and for a training step with and
without ASLoss. Needs CUDA (exits 2 with a message without it). Run by bench/gpu_check.py, or:

    python bench/gpu_bench.py --json out.json                  # one GPU
    torchrun --nproc_per_node=2 bench/gpu_bench.py --train-only --json out.json   # DDP, global batch

Under torchrun the training step is the project's own: DistributedDataParallel and the objective
on the gathered global batch (asl_core.training.loop.gather_batch); images/s counts the global batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from asl_core import distributed
from asl_core.checkpoint import CheckpointMeta, LoadedCheckpoint
from asl_core.data import Split
from asl_core.engine.features import extract_features
from asl_core.models import LayerTap, build_model
from asl_core.objectives import ASLossObjective, Batch, CrossEntropyObjective
from asl_core.training.loop import gather_batch
from asl_core.engine.options import InferenceOptions


def extraction(n: int, batch: int, side: int) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet18", 1000, in_channels=3)
    meta = CheckpointMeta(arch="resnet18", num_classes=1000, class_names=tuple(map(str, range(1000))),
                          input_shape=(3, side, side), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ckpt = LoadedCheckpoint(model=model, meta=meta)
    images = Split(x=torch.rand(n, 3, side, side), y=torch.zeros(n, dtype=torch.long), index=torch.arange(n))
    warm = Split(x=images.x[:batch], y=images.y[:batch], index=images.index[:batch])
    out = {}
    for label, amp, cl in (("fp32", None, False), ("bf16+channels_last", "bf16", True)):
        opts = InferenceOptions(device="cuda", batch_size=batch, amp=amp, channels_last=cl)
        extract_features(ckpt, warm, ["avgpool"], opts)
        torch.cuda.synchronize()
        start = time.perf_counter()
        extract_features(ckpt, images, ["avgpool"], opts)
        seconds = time.perf_counter() - start
        out[label] = round(n / seconds, 1)
    return {"extraction_images_per_s": out, "n": n, "batch": batch, "side": side,
            "note": "from host memory: includes the pinned copy to the GPU and the pooled features back"}


def streaming(n: int, batch: int, side: int, workers: int) -> dict:
    """Streaming extraction of ResNet-50's ``avgpool`` (bf16, channels_last) from a generated folder
    of ``n`` JPEGs at ``side`` px (decoded and resized per sample in DataLoader workers), against
    the bare forward pass of the same model on a batch already on the GPU: how much of the GPU the
    data layer keeps busy."""
    import tempfile

    import numpy as np
    from PIL import Image

    from asl_core.data import DatasetSpec, build_splits

    root = Path(tempfile.mkdtemp(prefix="gpu_stream_"))
    rng = np.random.default_rng(0)
    for c in range(10):
        (root / str(c)).mkdir()
    base = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    for i in range(n):
        Image.fromarray(np.roll(base, i, axis=1)).save(root / str(i % 10) / f"{i:06d}.jpg", quality=90)
    spec = DatasetSpec(source="folder", root=str(root), image_size=side, channels=3, val_per_class=1, test_per_class=1)
    split = build_splits(spec).train
    torch.manual_seed(0)
    model = build_model("resnet50", 10, in_channels=3)
    meta = CheckpointMeta(arch="resnet50", num_classes=10, class_names=tuple(map(str, range(10))),
                          input_shape=(3, side, side), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ckpt = LoadedCheckpoint(model=model, meta=meta)
    opts = InferenceOptions(device="cuda", batch_size=batch, amp="bf16", channels_last=True, workers=workers)
    extract_features(ckpt, split.subset(slice(0, batch)), ["avgpool"], opts)  # warm-up: cuDNN autotuning, worker start
    torch.cuda.synchronize()
    start = time.perf_counter()
    extract_features(ckpt, split, ["avgpool"], opts)
    streamed = len(split) / (time.perf_counter() - start)
    model = model.cuda().eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, side, side, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        steps = max(3, len(split) // batch)
        for _ in range(steps):
            model(x)
        torch.cuda.synchronize()
    bare = batch * steps / (time.perf_counter() - start)
    return {"streaming": {"images": len(split), "side": side, "batch": batch, "workers": workers,
                          "streamed_images_per_s": round(streamed, 1), "bare_forward_images_per_s": round(bare, 1),
                          "ratio": round(streamed / bare, 3)}}


def training(batch: int, side: int, steps: int, ctx: distributed.DistContext, device: torch.device) -> dict:
    """Images/s of one optimiser step (bf16 autocast, channels_last, AdamW), CE alone and CE+ASLoss
    on ``avgpool`` (each distance). ``batch`` is the global batch."""
    from torch.nn.parallel import DistributedDataParallel

    sizes = distributed.shard_sizes(batch, ctx.world_size)
    local = sizes[ctx.rank]
    results = {}
    objectives = {"CE": CrossEntropyObjective()}
    for distance in ("cosine", "smooth_l1", "euclidean"):
        objectives[f"CE+ASLoss {distance}"] = ASLossObjective(layers={"avgpool": 1.0}, distance=distance, as_weight=0.03)
    x = torch.randn(local, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (local,), device=device)
    for label, objective in objectives.items():
        torch.manual_seed(0)
        model = build_model("resnet18", 1000, in_channels=3).to(device, memory_format=torch.channels_last)
        net = DistributedDataParallel(model, device_ids=[device.index]) if ctx.active else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        layers = objective.layers()

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16), LayerTap(model, layers) as tap:
                logits = net(x)
            feats = {k: v.float() for k, v in tap.outputs.items()}
            out = objective(gather_batch(Batch(logits.float(), y, feats), sizes, ctx))
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            opt.step()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        results[label] = round(batch * steps / (time.perf_counter() - start), 1)
        del model, net, opt
        torch.cuda.empty_cache()
    base = results["CE"]
    return {"train_images_per_s": results, "ratio_to_CE": {k: round(base / v, 3) for k, v in results.items()},
            "global_batch": batch, "per_process_batch": local, "processes": ctx.world_size, "side": side,
            "steps": steps, "precision": "bf16 autocast, channels_last"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="write the figures here (rank 0)")
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--batch", type=int, default=256, help="global batch of the training step; extraction batch")
    p.add_argument("--images", type=int, default=2048, help="images extracted")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--streaming-only", action="store_true",
                   help="only the streaming extraction of ResNet-50 from a generated JPEG folder")
    p.add_argument("--stream-images", type=int, default=4096)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here (torch.cuda.is_available() is False); nothing to measure", file=sys.stderr)
        return 2
    with distributed.session("cuda") as (ctx, device):
        torch.backends.cudnn.benchmark = True
        result = {"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda}
        if args.streaming_only:
            if ctx.is_main:
                result.update(streaming(args.stream_images, args.batch, args.side, args.workers))
        else:
            if not args.train_only and ctx.is_main:
                result.update(extraction(args.images, args.batch, args.side))
            result.update(training(args.batch, args.side, args.steps, ctx, device))
        if ctx.is_main:
            print(json.dumps(result, indent=2))
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
