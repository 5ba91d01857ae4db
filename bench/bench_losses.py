"""ASLoss speed: the vectorised loss against a plain per-pair loop, and a full ResNet-18
training step with ASLoss against cross-entropy alone. Ratios are measured side by side in
one run (interleaved repeats, medians), so machine noise hits both sides alike.

    python bench/bench_losses.py [--quick] [--device cpu|cuda]

Targets (issue 2): vectorised >= 100x the loop at B=64, D=128; the ASLoss step at most
10% slower than the CE step at B=256 on resnet18.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from asl_core.losses import ASLoss, get_distance
from asl_core.models import LayerTap, build_model


def loop_asloss(h, y, distance, radius=10.0):
    """The authors' style: a Python double loop over pairs (self-pairs excluded, as ours)."""
    dist = get_distance(distance)
    same, diff = [], []
    for i in range(h.shape[0]):
        for j in range(h.shape[0]):
            if i != j:
                (same if y[i] == y[j] else diff).append(dist.pairwise(h[i : i + 1], h[j : j + 1])[0])
    l_scope = ((h.norm(dim=1) - radius) ** 2).mean()
    return torch.stack(same).mean() - torch.stack(diff).mean() + l_scope


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def interleaved(fns: dict, repeats: int, device) -> dict:
    for fn in fns.values():  # warm-up
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_loss(device, repeats):
    torch.manual_seed(0)
    b, d = 64, 128
    y = torch.randint(0, 10, (b,), device=device)
    print(f"ASLoss forward+backward, B={b}, D={d}, {device.type}")
    print(f"{'distance':<10} {'loop ms':>10} {'vectorised ms':>14} {'speed-up':>9}")
    for distance in ("smooth_l1", "euclidean", "cosine"):
        h = torch.randn(b, d, device=device, requires_grad=True)
        loss = ASLoss(distance=distance)

        def vec():
            h.grad = None
            loss(h, y).backward()

        def loop():
            h.grad = None
            loop_asloss(h, y, distance).backward()

        t = interleaved({"loop": loop, "vec": vec}, repeats, device)
        print(f"{distance:<10} {t['loop'] * 1e3:>10.1f} {t['vec'] * 1e3:>14.3f} {t['loop'] / t['vec']:>8.0f}x")


def bench_step(device, repeats, batch, size):
    """CE alone against CE + 0.1 * ASLoss on avgpool (D=512), for each distance."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=3).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def ce_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def asl_step(distance):
        loss = ASLoss(distance=distance)

        def step():
            opt.zero_grad(set_to_none=True)
            with LayerTap(model, ["avgpool"]) as tap:
                logits = model(x)
            (F.cross_entropy(logits, y) + 0.1 * loss(tap.outputs["avgpool"], y)).backward()
            opt.step()

        return step

    fns = {"ce": ce_step, **{d: asl_step(d) for d in ("smooth_l1", "euclidean", "cosine")}}
    t = interleaved(fns, repeats, device)
    print(f"\nresnet18 training step, B={batch}, {size}x{size}, ASLoss on avgpool (D=512), {device.type}; target <= 1.10")
    print(f"  CE alone {t['ce'] * 1e3:.0f} ms")
    for d in ("smooth_l1", "euclidean", "cosine"):
        print(f"  CE+ASLoss {d:<10} {t[d] * 1e3:>6.0f} ms   ratio {t[d] / t['ce']:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and a smaller step benchmark")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--sizes", default="32,112", help="image sides for the resnet18 step benchmark")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_loss(device, repeats=3 if args.quick else 7)
    for size in [int(s) for s in args.sizes.split(",")]:
        bench_step(device, repeats=2 if args.quick else 4, batch=64 if args.quick else 256, size=size)


if __name__ == "__main__":
    main()
