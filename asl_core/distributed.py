"""Many processes, one model: torchrun's environment, the process group, and the few collectives
training and extraction need. Below both (like :mod:`asl_core.runtime`), so neither imports the other.

Under ``torchrun --nproc_per_node=N`` every process finds ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in its environment; :func:`setup` joins the process group (NCCL when the device is
CUDA, each process on GPU ``LOCAL_RANK``; gloo on the CPU). Without torchrun nothing changes: one
process, :data:`SINGLE` as the context, and every helper here is the identity.

Batches: every rank draws the same *global* batch from the same seeded generator and takes a
contiguous slice of it (:func:`shard_sizes`), so the concatenation of the slices in rank order is
the single-process batch, in order. :func:`gather_rows` rebuilds it on every rank with autograd
kept on the rank's own slice (the way pytorch-metric-learning's ``DistributedLossWrapper`` does);
the gradient of that slice is multiplied by the world size, so that DDP's averaging of the
parameter gradients gives exactly the gradient of the single-process loss on the global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asl_core.errors import UserError
from asl_core.runtime import pick_device

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` (``local_rank`` on its node) and the
    process group's ``backend`` (``""`` for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a whole number (set by torchrun)") from None


def world_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """The context torchrun's variables describe (``backend`` not chosen yet); :data:`SINGLE`
    when ``WORLD_SIZE`` is unset or 1."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    rank = _env_int(env, "RANK", -1)
    if not 0 <= rank < world:
        raise UserError(f"RANK={env.get('RANK')!r} does not fit WORLD_SIZE={world}; start the command with torchrun")
    return DistContext(rank=rank, world_size=world, local_rank=_env_int(env, "LOCAL_RANK", rank))


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """The device this rank computes on: with several processes, ``cuda`` means GPU ``LOCAL_RANK``."""
    if not ctx.active or device.type != "cuda":
        return device
    if device.index is not None and device.index != ctx.local_rank:
        raise UserError(f"under torchrun every process takes GPU LOCAL_RANK ({ctx.local_rank}); "
                        f"use --device cuda (or auto), not {device}")
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise UserError(f"process {ctx.local_rank} on this node has no GPU of its own ({count} visible); "
                        f"use --nproc_per_node={count} or fewer")
    return torch.device("cuda", ctx.local_rank)


def setup(device: str | torch.device = "auto") -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when launched under it and return the context and this
    rank's device. NCCL on GPUs, gloo on the CPU. A no-op (:data:`SINGLE`) without torchrun."""
    ctx = world_from_env()
    dev = pick_device(device)
    if not ctx.active:
        return SINGLE, dev
    dev = local_device(dev, ctx)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, dist.get_backend()), dev


@contextlib.contextmanager
def session(device: str | torch.device = "auto") -> Iterator[tuple[DistContext, torch.device]]:
    """:func:`setup` for one command; the process group is left on the way out, unless it was
    already there when the command started (a caller that joined it keeps it)."""
    joined_before = dist.is_available() and dist.is_initialized()
    ctx, dev = setup(device)
    try:
        yield ctx, dev
    finally:
        if not joined_before:
            teardown()


def current() -> DistContext:
    """The context of the initialised process group, else :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    rank = dist.get_rank()
    return DistContext(rank, dist.get_world_size(), _env_int(os.environ, "LOCAL_RANK", rank), dist.get_backend())


def teardown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def threads_per_process(ctx: DistContext, env: Mapping[str, str] | None = None) -> int | None:
    """CPU threads for one of the processes torchrun starts on this node, when neither ``--threads``
    nor ``ASL_LENS_THREADS`` says: the command's default share of the cores divided by
    ``LOCAL_WORLD_SIZE``, so N processes on one machine do not each take the whole share (at
    least 1). ``None`` (the usual default) for a single process or when the setting is given."""
    from asl_core.runtime import default_threads
    from asl_core.settings import get_settings

    env = os.environ if env is None else env
    if not ctx.active or get_settings().threads:
        return None
    return max(1, default_threads("cli") // max(1, _env_int(env, "LOCAL_WORLD_SIZE", 1)))


# --------------------------------------------------------------------------- batches


def shard_sizes(n: int, world_size: int) -> list[int]:
    """Rows of each rank's contiguous slice of ``n`` rows (the first ``n % world_size`` get one more),
    as :func:`torch.tensor_split` cuts them."""
    base, extra = divmod(n, world_size)
    return [base + (r < extra) for r in range(world_size)]


def shard_slice(n: int, ctx: DistContext) -> slice:
    """This rank's contiguous slice of ``n`` rows (the whole range for a single process)."""
    sizes = shard_sizes(n, ctx.world_size)
    start = sum(sizes[: ctx.rank])
    return slice(start, start + sizes[ctx.rank])


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # noqa: D401
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def gather_rows(t: torch.Tensor, sizes: list[int], ctx: DistContext) -> torch.Tensor:
    """Every rank's rows ``[sizes[r], ...]`` concatenated in rank order, on every rank.

    The rank's own rows keep their autograd graph, with the gradient multiplied by
    ``world_size``; the other ranks' rows are constants. Each rank then computes the same loss on
    the same global batch, backpropagates into its own rows only, and DDP's mean over ranks gives
    ``sum over ranks of (1/W) * W * dL/d(own rows)`` = the single-process gradient of that loss.
    ``t`` may be on the CPU (gloo) or the rank's GPU (NCCL)."""
    if not ctx.active:
        return t
    if len(sizes) != ctx.world_size or t.shape[0] != sizes[ctx.rank]:
        raise ValueError(f"rank {ctx.rank} holds {t.shape[0]} rows; the shard sizes say {sizes}")
    width = max(sizes)
    padded = t.detach().new_zeros((width, *t.shape[1:]))
    padded[: t.shape[0]] = t.detach()
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded.contiguous())
    rows = [p[:n] for p, n in zip(parts, sizes)]
    rows[ctx.rank] = _ScaleGrad.apply(t, float(ctx.world_size)) if t.requires_grad else t
    return torch.cat(rows)


def all_true(flag: bool, ctx: DistContext, device: torch.device | None = None) -> bool:
    """Whether ``flag`` holds on every rank (one small all-reduce)."""
    if not ctx.active:
        return flag
    if device is None:  # NCCL reduces GPU tensors only
        device = torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
