"""Feature extraction: per-layer representations, logits and predictions of one model on one split.

Conv maps are global-average-pooled by the forward hooks (``LayerTap``) on the device, so
only ``[B, D]`` rows ever cross to the host. On CUDA the inputs go through pinned memory
with non-blocking copies and the outputs land in pinned host buffers; a CUDA out-of-memory
error halves the batch and retries (logged, and recorded in ``Features.oom_retries``).

    feats = extract_features(ckpt, splits.test, ["block3", "embedding"], InferenceOptions(device="cpu"))
    feats.layers["embedding"]   # [N, 64] float32
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from asl_core.checkpoint import LoadedCheckpoint
from asl_core.data import Split
from asl_core.engine.metrics import classification_metrics
from asl_core.engine.options import InferenceOptions
from asl_core.errors import UserError
from asl_core.models import LayerTap, resolve_layers
from asl_core.runtime import pick_device

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
Sink = Callable[[str, tuple[int, ...], np.dtype], np.ndarray]
# host dtypes of the outputs (``layer:NAME``, logits and confidence float32; predictions int64)
OUT_DTYPES = {"pred": np.int64}


@dataclass(frozen=True)
class Features:
    """What one model computes on one split. ``N`` samples, ``C`` classes.

    ``layers``: ``{name: [N, D] float32}`` in the requested order; ``logits``: ``[N, C]`` float32;
    ``preds``: ``[N]`` int64; ``confidence``: ``[N]`` max softmax; ``labels``: ``[N]`` int64;
    ``index``: ``[N]`` sample index in the source dataset. ``batch_size`` is the batch size
    finally used and ``oom_retries`` how many times it was halved after running out of memory."""

    layers: dict[str, np.ndarray]
    logits: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    split: str = ""
    batch_size: int = 0
    oom_retries: int = 0
    device: str = "cpu"
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """``[N]`` bool."""
        return self.preds == self.labels


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.Lock:
    """One lock per model object: hooks, eval mode and device moves are model-wide state, so two
    threads (two app sessions sharing a cached model) must not extract from it at once."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def _default_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def extract_features(
    ckpt: LoadedCheckpoint,
    split: Split,
    layers: list[str],
    options: InferenceOptions = InferenceOptions(),
    progress: Callable[[int, int], None] | None = None,
    split_name: str = "",
    forward: Forward | None = None,
    sink: Sink | None = None,
) -> Features:
    """Run ``ckpt.model`` over ``split`` (``x`` ``[N, C, H, W]`` in [0, 1], normalised here with
    the checkpoint's mean/std) and keep the pooled outputs of ``layers``.

    ``options`` says where and how (:class:`InferenceOptions`; autocast and channels-last apply
    on CUDA only). ``forward`` replaces
    ``model(x)``; tests use it to simulate running out of memory. Unknown layers raise a
    ``LayerError`` (a ``ValueError``) that lists the valid names. The model's train/eval mode
    and device are restored afterwards."""
    meta = ckpt.meta
    if split.channels != meta.data_channels:
        raise UserError(f"the model expects {meta.data_channels}-channel data; the data has {split.channels}")
    return run_model(ckpt.model, split, meta.mean, meta.std, layers, options, progress=progress, split_name=split_name,
                     forward=forward, channel_repeat=meta.channel_repeat, sink=sink)


def run_model(
    model: nn.Module,
    split: Split,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    layers: list[str] = (),
    options: InferenceOptions = InferenceOptions(),
    progress: Callable[[int, int], None] | None = None,
    split_name: str = "",
    forward: Forward | None = None,
    channel_repeat: int = 1,
    sink: Sink | None = None,
) -> Features:
    """The one inference loop: ``model`` over ``split`` normalised with ``mean``/``std``. Used by
    :func:`extract_features` (a checkpoint) and by training's evaluation (a model in training).
    ``channel_repeat`` 3 repeats a grayscale split's channel for a 3-channel model (``mean``/``std``
    then have 3 values). The split is read through a DataLoader (:func:`asl_core.data.split_loader`;
    ``options.workers`` decode a streamed split). ``sink(key, shape, dtype)`` gives the arrays the rows
    are written into (the cache passes memory-mapped files, so no ``[N, D]`` array of any layer
    need be in RAM); by default they are host buffers."""
    if not isinstance(options, InferenceOptions):
        raise TypeError(f"options must be an InferenceOptions, got {type(options).__name__}")
    if channel_repeat not in (1, 3) or (channel_repeat == 3 and split.channels != 1):
        raise ValueError(f"channel_repeat 3 needs 1-channel data and 1 keeps it; got {channel_repeat!r} for "
                         f"{split.channels}-channel data")
    layers = list(dict.fromkeys(layers))  # unique, in order
    resolve_layers(model, layers)  # fail on unknown names before any work
    dev = pick_device(options.device)
    n = len(split)
    if n == 0:
        raise UserError("the split is empty")
    with model_lock(model):
        buffers, bs, notes = _run_batches(model, split, layers, mean, std, dev, options, progress,
                                          forward or _default_forward, channel_repeat, sink)
    arr = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in buffers.items()}
    return Features(
        layers={name: arr[f"layer:{name}"] for name in layers},
        logits=arr["logits"],
        preds=arr["pred"],
        confidence=arr["conf"],
        labels=split.y.numpy().astype(np.int64),
        index=split.index.numpy().astype(np.int64),
        split=split_name,
        batch_size=bs,
        oom_retries=len(notes),
        device=str(dev),
        notes=tuple(notes),
    )


def evaluate(model: nn.Module, split: Split, mean: tuple[float, ...], std: tuple[float, ...],
             options: InferenceOptions, num_classes: int, channel_repeat: int = 1) -> dict:
    """Classification metrics of ``model`` on ``split`` plus its mean cross-entropy (``loss``),
    through the same loop as extraction. The model's mode and device are restored."""
    feats = run_model(model, split, mean, std, (), options, channel_repeat=channel_repeat)
    metrics = classification_metrics(feats.labels, feats.preds, num_classes)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(torch.from_numpy(feats.logits), split.y))
    return metrics


def _run_batches(
    model: nn.Module,
    split: Split,
    layers: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    dev: torch.device,
    options: InferenceOptions,
    progress: Callable[[int, int], None] | None,
    forward: Forward,
    channel_repeat: int = 1,
    sink: Sink | None = None,
) -> tuple[dict[str, torch.Tensor | np.ndarray], int, list[str]]:
    """The batch loop over a DataLoader. Returns the output arrays (``layer:NAME`` ``[N, D]``,
    ``logits``, ``conf``, ``pred``), the batch size finally used and one note per out-of-memory
    retry (a loaded batch is then run in halves)."""
    from asl_core.data.loading import split_loader

    n, on_cuda = len(split), dev.type == "cuda"
    was_training, home = model.training, _model_device(model)
    use_cl = options.channels_last and on_cuda
    amp = options.amp
    autocast = torch.autocast("cuda", dtype=AMP_DTYPES[amp]) if (amp and on_cuda) else contextlib.nullcontext()
    buffers: dict[str, torch.Tensor | np.ndarray] = {}
    notes: list[str] = []
    bs = options.batch_size
    model.eval()
    model.to(dev)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    # built once, not per batch: for a tiny model the per-batch small ops are most of the overhead
    shift = torch.as_tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    scale = torch.as_tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    pending: list[tuple[torch.Tensor | np.ndarray, int, int, torch.Tensor]] = []  # host copies still in flight
    staging: dict[str, torch.Tensor] = {}

    def flush() -> None:
        if on_cuda and pending:
            torch.cuda.synchronize(dev)
        for buf, a, b, host in pending:
            buf[a:b] = host.numpy()
        pending.clear()

    try:
        with torch.inference_mode(), LayerTap(model, layers, pool=True, detach=True) as tap:
            start = 0
            for loaded, _, _ in split_loader(split, batch_size=options.batch_size, workers=options.workers, device=dev):
                pos = 0
                while pos < loaded.shape[0]:
                    xb = loaded[pos : pos + bs].to(dev, torch.float32, non_blocking=on_cuda)
                    if channel_repeat > 1:  # a view; the subtraction below makes the new tensor
                        xb = xb.expand(-1, channel_repeat, -1, -1)
                    xb = xb.sub(shift).div_(scale)
                    if use_cl:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    tap.outputs.clear()
                    try:
                        with autocast:
                            logits = forward(model, xb)
                    except torch.OutOfMemoryError:
                        tap.outputs.clear()
                        del xb
                        if bs == 1:
                            raise UserError("out of device memory even with a batch of 1; use the CPU (device='cpu')") from None
                        if on_cuda:
                            torch.cuda.empty_cache()
                        notes.append(f"out of memory at batch size {bs}; retried with {bs // 2}")
                        log.warning(notes[-1])
                        bs //= 2
                        continue
                    logits = logits.float()
                    conf, pred = torch.softmax(logits, dim=1).max(dim=1)
                    rows = {f"layer:{name}": tap.outputs[name].float() for name in layers}
                    rows.update(logits=logits, conf=conf, pred=pred.long())
                    stop = start + xb.shape[0]
                    flush()  # the previous batch's copies landed while this one ran
                    for key, value in rows.items():
                        if key not in buffers:  # sized on the first batch
                            shape = (n, *value.shape[1:])
                            dtype = OUT_DTYPES.get(key, np.float32)
                            buffers[key] = (sink(key, shape, np.dtype(dtype)) if sink is not None
                                            else np.empty(shape, dtype=dtype))
                        if on_cuda:  # one pinned staging buffer per output, reused: asynchronous copies
                            if key not in staging or staging[key].shape[0] < value.shape[0]:
                                staging[key] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                            host = staging[key][: value.shape[0]]
                            host.copy_(value, non_blocking=True)
                            pending.append((buffers[key], start, stop, host))
                        else:
                            buffers[key][start:stop] = value.numpy()
                    start = stop
                    pos += xb.shape[0]
                    if progress is not None:
                        progress(start, n)
            flush()
    finally:
        if use_cl:
            model.to(memory_format=torch.contiguous_format)
        model.to(home)
        model.train(was_training)
    return buffers, bs, notes
