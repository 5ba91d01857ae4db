"""How a model is run over a split: one frozen value passed from the app, the CLIs and training
down to the inference loop, instead of the same five keywords threaded through every signature.

    opts = InferenceOptions(device="cuda", batch_size=512, amp="bf16", channels_last=True)
    feats = extract_features(ckpt, splits.test, ["avgpool"], opts)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a leaf module: importing it must not import torch
    import torch

AMP_CHOICES = ("bf16", "fp16")


@dataclass(frozen=True)
class InferenceOptions:
    """``device``: ``"auto"`` (CUDA when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``. ``batch_size``: rows per forward pass (halved on CUDA out-of-memory).
    ``amp``: ``None``, ``"bf16"`` or ``"fp16"`` autocast, CUDA only. ``channels_last``: NHWC
    memory format, CUDA only. ``workers``: DataLoader decode workers for a streamed split
    (``None``: from the thread budget in :mod:`asl_core.runtime`; ``0``: in the calling process).

    Only ``amp`` changes the numbers beyond float noise, so it alone is part of a cache key."""

    device: str | torch.device = "auto"
    batch_size: int = 256
    amp: str | None = None
    channels_last: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.amp not in (None, *AMP_CHOICES):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise ValueError(f"workers must be None or an integer >= 0, got {self.workers!r}")


CPU = InferenceOptions(device="cpu")
