"""Small generated image folders for tests (one sub-folder per class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_folder(root: Path, classes, per_class: int, size: int = 12, fmt: str = "PNG") -> Path:
    """``per_class`` random ``size`` px RGB images per class, each class a little brighter."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = (rng.random((size, size, 3)) * 60 + 40 * (c % 5)).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}", fmt)
    return root
