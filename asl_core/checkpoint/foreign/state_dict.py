"""Plain state dicts (``.pt``/``.pth``/``.bin``/``.safetensors`` without our metadata) and
Lightning-style ``.ckpt`` files: a mapping of names to tensors, possibly under a key or prefix."""

from __future__ import annotations

from typing import Any

import torch

from asl_core.errors import CheckpointError


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """A plain state dict, a Lightning-style ``{"state_dict": ..., }`` with a ``model.``
    prefix, or a ``{"model": state_dict}`` / DataParallel ``module.`` prefixed dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("the file holds no state dict (expected a mapping of parameter names to tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj):
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:3]
        raise CheckpointError(f"the state dict has entries that are not tensors: {', '.join(bad)}")
    for prefix in ("model.", "module.", "net."):
        if all(str(k).startswith(prefix) for k in tensors):
            tensors = {str(k)[len(prefix) :]: v for k, v in tensors.items()}
    return {str(k): v for k, v in tensors.items()}


def infer_num_classes(state: dict[str, torch.Tensor]) -> int | None:
    """Rows of the last 2-D weight (the classifier's, in every architecture we know)."""
    two_d = [v for k, v in state.items() if v.dim() == 2 and not k.endswith(("pos_embed", "cls_token"))]
    return int(two_d[-1].shape[0]) if two_d else None


def infer_in_channels(state: dict[str, torch.Tensor], first_conv: str | None = None) -> int | None:
    """Input channels from the stem convolution (``first_conv`` or the first 4-D weight)."""
    stem = state.get(first_conv) if first_conv else next((v for v in state.values() if v.dim() == 4), None)
    if stem is not None and stem.dim() == 4 and int(stem.shape[1]) in (1, 3):
        return int(stem.shape[1])
    return None
