"""CPU scaling of distributed training: 1 process against 2 gloo processes, side by side.

    python bench/bench_distributed.py            # digits-hard and mnist-lt, ASLoss, 2 rounds
    python bench/bench_distributed.py --quick    # digits-hard only, 1 round

Each configuration trains the same model on the same global batches (asl_core.training.train under
DistributedDataParallel, ASLoss over the gathered global batch); the processes are started first
and the clock runs from a barrier to the end of training, so start-up is not counted. Rounds
alternate 1 and 2 processes so that a change in the machine's load hits both. Scaling efficiency
= T(1 process) / (2 * T(2 processes)); one process with 2 threads is shown too, the fair
comparison on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from asl_core.testkit.distributed import run_gloo, time_training

WORKLOADS = {
    "digits-hard": dict(dataset="digits-hard", arch="digits_cnn", epochs=20, batch_size=64),
    "mnist-lt": dict(dataset="mnist-lt", arch="mnist_cnn", epochs=2, batch_size=128),
}


def measure(workload: dict, processes: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "seconds"
        config = dict(workload, method="asloss", sampler="balanced", seed=0, device="cpu")
        run_gloo(time_training, processes, config, result, threads=threads)
        return float(result.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    p.add_argument("--no-threads-row", action="store_true", help="leave out 1 process x 2 threads (slow on a busy machine)")
    args = p.parse_args()
    names = ["digits-hard"] if args.quick else [n.strip() for n in args.workloads.split(",") if n.strip()]
    rounds = 1 if args.quick else args.rounds
    setups = [("1 process x 1 thread", 1, 1), ("2 processes x 1 thread (gloo)", 2, 1)]
    if not args.no_threads_row:
        setups.append(("1 process x 2 threads", 1, 2))
    for name in names:
        w = WORKLOADS[name]
        print(f"\n{name}: {w['arch']}, ASLoss, balanced batches, global batch {w['batch_size']}, {w['epochs']} epochs")
        times: dict[str, list[float]] = {label: [] for label, _, _ in setups}
        for _ in range(rounds):
            for label, procs, threads in setups:
                times[label].append(measure(w, procs, threads))
        med = {label: statistics.median(v) for label, v in times.items()}
        for label, _, _ in setups:
            print(f"  {label:<32} {med[label]:7.2f} s   (rounds: {', '.join(f'{t:.2f}' for t in times[label])})")
        one, two = med["1 process x 1 thread"], med["2 processes x 1 thread (gloo)"]
        line = f"  speed-up 2 processes vs 1: {one / two:.2f}x; scaling efficiency {one / (2 * two):.0%}"
        if "1 process x 2 threads" in med:
            line += f"; vs 1 process x 2 threads: {med['1 process x 2 threads'] / two:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
