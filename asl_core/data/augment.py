"""Random augmentation per training batch (METHODS.md section 3: the authors' scripts use small
rotations and shifts; flips only where the classes allow them).

One affine warp per batch (``affine_grid`` + ``grid_sample``: a rotation, a scale and a shift
drawn per image), seeded by the caller's generator so training stays reproducible. On 28x28
digits it costs ~7 ms an epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """``rotation``: max degrees either way; ``shift``: max translation as a fraction of the side;
    ``scale``: max relative zoom either way; ``flip``: random horizontal flips (only when the
    dataset allows them). All zero: the identity."""

    rotation: float = 12.0
    shift: float = 0.07
    scale: float = 0.1
    flip: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.rotation <= 180 and 0 <= self.shift < 1 and 0 <= self.scale < 1):
            raise ValueError("augmentation needs rotation in [0, 180] degrees, shift and scale in [0, 1)")

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.shift or self.scale or self.flip)

    def to_dict(self) -> dict:
        return {"rotation": self.rotation, "shift": self.shift, "scale": self.scale, "flip": self.flip}

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x`` [B, C, H, W] in [0, 1] -> an augmented copy (zeros where the warp leaves the image)."""
        if not self.active or x.shape[0] == 0:
            return x
        b = x.shape[0]
        u = torch.rand(b, 5, generator=generator).to(x.device)
        angle = (u[:, 0] * 2 - 1) * math.radians(self.rotation)
        zoom = 1.0 + (u[:, 1] * 2 - 1) * self.scale
        tx, ty = (u[:, 2] * 2 - 1) * self.shift * 2, (u[:, 3] * 2 - 1) * self.shift * 2  # grid units span 2
        flip = torch.where((u[:, 4] < 0.5) & torch.tensor(self.flip, device=x.device), -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


NO_AUGMENTATION = Augmentation(0.0, 0.0, 0.0, False)
