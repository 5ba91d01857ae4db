"""Run a function in N gloo processes on the CPU, the way torchrun would start them.

    run_gloo(check_something, 2, tmp_path)   # check_something(ctx, tmp_path) in ranks 0 and 1

Each process gets torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), joins the group through
:func:`asl_core.distributed.setup` and leaves it afterwards; an exception in any rank fails the
call with that rank's traceback. The functions must live in an importable module (processes are
spawned, not forked: a forked copy of a process that already ran torch's thread pools can hang).
The checks used by ``tests/distributed`` and ``bench/bench_distributed.py`` are below.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asl_core import distributed
from asl_core.distributed import DistContext


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable[..., Any], world_size: int, port: int, threads: int, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    ctx, _ = distributed.setup("cpu")
    try:
        fn(ctx, *args)
    finally:
        distributed.teardown()


@contextlib.contextmanager
def started_main() -> Any:
    """Let spawned processes import only the script Python started as ``__main__``. A spawned
    process re-runs the parent's ``__main__``, and a Streamlit script run (``AppTest`` too) installs
    its page there and leaves it: a rank spawned after a page ran would run that page (and fail)."""
    main = sys.modules.get("__main__")
    started = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
    own = getattr(main, "__spec__", None) is not None or (
        getattr(main, "__file__", None) is not None and os.path.abspath(main.__file__) == started)
    if own:
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def run_gloo(fn: Callable[..., Any], world_size: int, *args: Any, threads: int = 1) -> None:
    """``fn(ctx, *args)`` in ``world_size`` spawned CPU processes joined by gloo."""
    import torch.multiprocessing as mp

    with started_main():
        mp.spawn(_entry, args=(fn, world_size, free_port(), threads, args), nprocs=world_size, join=True)


# --------------------------------------------------------------------------- a probe model


class ProbeMLP(nn.Module):
    """A BatchNorm-free model for 8x8 digits: BatchNorm normalises each process's slice with its own
    statistics, so only a model without it can reach the same weights as one process exactly."""

    def __init__(self, num_classes: int, in_channels: int = 1, small_input: bool = True):
        super().__init__()
        self.block1 = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 48), nn.Tanh())
        self.embedding = nn.Linear(48, 24)
        self.fc = nn.Sequential(nn.Tanh(), nn.Linear(24, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(self.block1(x)))


def register_probe() -> str:
    """Add :class:`ProbeMLP` to the architecture registry of this process (as ``probe_mlp``)."""
    from asl_core.models.architectures import ARCHITECTURES, ArchInfo

    ARCHITECTURES["probe_mlp"] = ArchInfo(ProbeMLP, "embedding", "test probe (no BatchNorm)", "block1.1.weight",
                                          ("embedding",), (1, 8))
    return "probe_mlp"


# --------------------------------------------------------------------------- checks (run in every rank)


def check_global_batch_asloss(ctx: DistContext) -> None:
    """ASLoss (and CE) on the gathered global batch: the same value as one process on the whole batch,
    on every rank, and after DDP's averaging the same parameter gradients; for every distance, with a
    batch that does not divide evenly between the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    from asl_core.losses import ASLoss
    from asl_core.models import LayerTap
    from asl_core.objectives import ASLossObjective, Batch
    from asl_core.training.loop import gather_batch

    torch.manual_seed(0)
    b = 4 * ctx.world_size + 1  # uneven slices
    x = torch.randn(b, 1, 8, 8)
    y = torch.arange(b) % 3
    sizes = distributed.shard_sizes(b, ctx.world_size)
    part = distributed.shard_slice(b, ctx)
    for distance in ("smooth_l1", "euclidean", "cosine"):
        # the bare loss on features: gathered slices == the concatenated batch
        h = torch.randn(b, 5, requires_grad=True)
        gathered = distributed.gather_rows(h[part], sizes, ctx)
        loss = ASLoss(distance)
        torch.testing.assert_close(loss(gathered, y), loss(h, y), rtol=0, atol=0)

        torch.manual_seed(1)
        model = ProbeMLP(3)
        reference = copy.deepcopy(model)
        objective = ASLossObjective(layers={"embedding": 1.0, "block1": 0.5}, distance=distance, as_weight=1.0,
                                    lambda_scope=0.1)
        with LayerTap(reference, objective.layers()) as tap:
            logits = reference(x)
        expected = objective(Batch(logits, y, dict(tap.outputs)))
        expected.total.backward()

        net = DistributedDataParallel(model)
        with LayerTap(model, objective.layers()) as tap:
            logits = net(x[part])
        out = objective(gather_batch(Batch(logits, y[part], dict(tap.outputs)), sizes, ctx))
        torch.testing.assert_close(out.total, expected.total, rtol=1e-6, atol=1e-7)
        assert out.layer_terms.keys() == expected.layer_terms.keys()
        for name, terms in expected.layer_terms.items():
            for term, value in terms.items():
                assert abs(out.layer_terms[name][term] - value) <= 1e-6 * max(1.0, abs(value)), (distance, name, term)
        out.total.backward()  # DDP averages the parameter gradients over the ranks here
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=f"{distance}: gradient of {name}")


def check_ddp_weights(ctx: DistContext) -> None:
    """``world_size`` processes with B / world_size each reach, after a few optimiser steps, the
    weights one process reaches with batch B (ASLoss on two layers, random and class-balanced
    batches); the history and the metrics agree too."""
    from asl_core.data import build_splits, get_spec
    from asl_core.training import TrainConfig, train

    arch = register_probe()
    spec = get_spec("digits-hard")
    splits = build_splits(spec)
    for sampler in ("random", "balanced"):
        config = TrainConfig(method="asloss", arch=arch, epochs=2, batch_size=64, seed=3, device="cpu", augment=False,
                             sampler=sampler, layers={"embedding": 0.5, "block1": 0.2}, as_weight=1.0)
        many = train(config, spec, splits=splits, progress=False, dist_ctx=ctx)
        assert many.meta.hyperparams["distributed"]["world_size"] == ctx.world_size
        if not ctx.is_main:
            continue
        one = train(config, spec, splits=splits, progress=False, dist_ctx=distributed.SINGLE)
        for name, expected in one.model.state_dict().items():
            torch.testing.assert_close(many.model.state_dict()[name], expected, rtol=1e-4, atol=1e-5,
                                       msg=f"{sampler}: weights of {name}")
        for got, want in zip(many.meta.history, one.meta.history):
            assert got["same_class_pairs"] == want["same_class_pairs"], sampler
            assert abs(got["train_loss"] - want["train_loss"]) < 1e-5, (sampler, got["train_loss"], want["train_loss"])
        assert many.meta.metrics["test"]["accuracy"] == one.meta.metrics["test"]["accuracy"], sampler


def check_sharded_extraction(ctx: DistContext, checkpoint: Path, cache_dir: Path) -> None:
    """``asl-lens extract`` under torchrun's variables: each rank writes its shard, rank 0 merges them
    under the single-process key, and the shard entries are gone afterwards."""
    from asl_core.engine import extract

    code = extract.main([str(checkpoint), "--split", "test", "--layers", "embedding,block3", "--device", "cpu",
                         "--cache-dir", str(cache_dir), "--batch-size", "64"])
    assert code == 0


def check_sharded_folder_extraction(ctx: DistContext, checkpoint: Path, cache_dir: Path, log_dir: Path) -> None:
    """``asl-lens extract`` of a model trained on an image folder: each rank logs the source
    indices it decodes (in its DataLoader workers too) to ``log_dir/decoded-RANK.txt``; the test
    checks that a rank read its own shard of files and no other."""
    import os

    from asl_core.data import sources
    from asl_core.engine import extract

    plain = sources.FolderSource.load
    log_file = log_dir / f"decoded-{ctx.rank}.txt"

    def logged(self, i: int):
        with open(log_file, "a") as f:  # one line per decode, from whichever process decodes it
            f.write(f"{i}\n")
            f.flush()
            os.fsync(f.fileno())
        return plain(self, i)

    sources.FolderSource.load = logged
    # mp.spawn made this rank's default start method "spawn" (torchrun's ranks fork): fork the
    # DataLoader workers so that they inherit the logging above
    import multiprocessing

    multiprocessing.set_start_method("fork", force=True)
    try:
        code = extract.main([str(checkpoint), "--split", "test", "--layers", "embedding", "--device", "cpu",
                             "--cache-dir", str(cache_dir), "--batch-size", "4"])
    finally:
        sources.FolderSource.load = plain
    assert code == 0


def run_checks(ctx: DistContext, out_dir: Path, checks: list[tuple[str, tuple]]) -> None:
    """Several checks in one set of processes (starting them is most of a small check's time).
    Rank 0 writes ``NAME.ok`` after each check that passed; a failure is written to ``NAME.failed``
    and raised, which stops every rank (``torch.multiprocessing.spawn`` ends the others)."""
    import traceback

    for name, args in checks:
        try:
            globals()[name](ctx, *args)
        except BaseException:
            (out_dir / f"{name}.failed").write_text(f"rank {ctx.rank}:\n{traceback.format_exc()}")
            raise
        distributed.barrier(ctx)
        if ctx.is_main:
            (out_dir / f"{name}.ok").write_text("passed")


# --------------------------------------------------------------------------- scaling bench


def time_training(ctx: DistContext, config_dict: dict, result_file: Path) -> None:
    """Train with ``config_dict`` (a :class:`TrainConfig`'s fields) and write the seconds rank 0 took."""
    from asl_core.data import build_splits, get_spec
    from asl_core.training import TrainConfig, train

    spec = get_spec(config_dict.pop("dataset"))
    splits = build_splits(spec)
    config = TrainConfig(**config_dict)
    distributed.barrier(ctx)
    start = time.perf_counter()
    train(config, spec, splits=splits, progress=False, dist_ctx=ctx)
    seconds = time.perf_counter() - start
    if ctx.is_main:
        result_file.write_text(f"{seconds:.3f}")
