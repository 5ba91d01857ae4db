"""A busy machine: a training run and the app's projection work side by side, with torch's
default thread counts and with ours (``asl_core.runtime.default_threads``).

    .venv/bin/python bench/bench_busy.py [--steps 30] [--points 3000]

Each workload runs in its own process, first alone, then both at once; the slowdown is
together / alone. ``defaults``: neither process limits its threads (torch, BLAS and numba take
one per core each); ``ours``: training takes ``default_threads("cli")`` and the app
``default_threads("app")``, as ``asl-lens train`` and the app's pages do. Other jobs on the
machine add to both columns alike; compare the ratios, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """
import sys, time, torch
threads = int(sys.argv[1])
if threads:
    from asl_core.runtime import limit_threads
    limit_threads(threads)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, padding=1),
                            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(1024, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
print(time.perf_counter() - t)
"""

APP = """
import sys, time, numpy as np
threads = int(sys.argv[1])
if threads:
    from asl_core.runtime import limit_threads
    limit_threads(threads)
from asl_core.engine.projection import ProjectionConfig, project, warm_up
warm_up()
rng = np.random.default_rng(0)
n = int(sys.argv[2])
y = rng.integers(0, 10, n)
X = (rng.normal(size=(n, 64)) + 4 * rng.normal(size=(10, 64))[y]).astype(np.float32)
t = time.perf_counter()
project(X, y, ProjectionConfig(method="umap"))
project(X, y, ProjectionConfig(method="tsne"))
print(time.perf_counter() - t)
"""


def start(code: str, threads: int, size: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ASL_LENS_THREADS", None)
    return subprocess.Popen([sys.executable, "-c", code, str(threads), str(size)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def seconds(proc: subprocess.Popen) -> float:
    out, err = proc.communicate(timeout=3600)
    if proc.returncode:
        raise RuntimeError(err[-2000:])
    return float(out.split()[-1])


def main() -> int:
    from asl_core.runtime import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps (batch 128, 28x28)")
    p.add_argument("--points", type=int, default=3000, help="points for the app's UMAP + t-SNE")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    steps, points = (5, 600) if args.quick else (args.steps, args.points)
    cores = os.cpu_count() or 1
    configs = [("defaults (no limit)", 0, 0), (f"ours (train {default_threads('cli')}, app {default_threads('app')})",
                                               default_threads("cli"), default_threads("app"))]
    print(f"{cores} cores; training: {steps} steps; app: UMAP + t-SNE of {points} points")
    print(f"{'threads':<26} {'train alone':>11} {'train busy':>11} {'slowdown':>9} {'app alone':>10} {'app busy':>9} "
          f"{'slowdown':>9}")
    for name, t_threads, a_threads in configs:
        train_alone = seconds(start(TRAIN, t_threads, steps))
        app_alone = seconds(start(APP, a_threads, points))
        train, app = start(TRAIN, t_threads, steps), start(APP, a_threads, points)
        train_busy, app_busy = seconds(train), seconds(app)
        print(f"{name:<26} {train_alone:>11.2f} {train_busy:>11.2f} {train_busy / train_alone:>8.2f}x "
              f"{app_alone:>10.2f} {app_busy:>9.2f} {app_busy / app_alone:>8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
