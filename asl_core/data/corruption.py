"""METHODS.md section 3's corrupted evidence: blur, then an occluded square, then additive noise.

:func:`corrupt` degrades a whole in-memory split with one generator (the embedded presets: their
committed numbers depend on this exact order of draws); :func:`corrupt_one` degrades one streamed
image with a generator seeded by the spec's seed and the sample's index, so a sample looks the
same whichever worker, rank or batch decodes it.
"""

from __future__ import annotations

import math

import torch

from asl_core.data.spec import DatasetSpec


def corrupt(x: torch.Tensor, spec: DatasetSpec, generator: torch.Generator) -> torch.Tensor:
    """Blur, then occlude a random square, then add noise; clamp to [0, 1]. ``x``: [N, C, H, W]."""
    out = x.clone()
    n, _, h, w = out.shape
    if spec.blur > 0:
        from torchvision.transforms.functional import gaussian_blur

        k = 2 * math.ceil(3 * spec.blur) + 1
        k = min(k, 2 * (min(h, w) // 2) - 1)  # reflect padding must stay inside the image
        if k >= 3:
            out = gaussian_blur(out, kernel_size=[k, k], sigma=[spec.blur, spec.blur])
    if spec.occlusion > 0:
        side = max(1, int(round(spec.occlusion * min(h, w))))
        top = torch.randint(0, h - side + 1, (n,), generator=generator)
        left = torch.randint(0, w - side + 1, (n,), generator=generator)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        mask = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + side).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1))
            & (cols < (left + side).view(n, 1, 1))
        )
        out = out.masked_fill(mask[:, None], 0.0)
    if spec.noise > 0:
        out = out + spec.noise * torch.randn(out.shape, generator=generator)
    return out.clamp_(0.0, 1.0)


def corrupt_one(x: torch.Tensor, spec: DatasetSpec, sample_index: int) -> torch.Tensor:
    """One image ``[C, H, W]`` through :func:`corrupt`, seeded by ``(spec.seed, sample_index)``."""
    if not (spec.blur or spec.noise or spec.occlusion):
        return x
    gen = torch.Generator().manual_seed(int(spec.seed) * 1_000_003 + int(sample_index))
    return corrupt(x[None], spec, gen)[0]
