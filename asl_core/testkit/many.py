"""A generated many-class library (100 to 1,000 classes) for the Compare tests and benches: an
image folder of 8x8 grayscale images (a random prototype per class plus noise) and two models
trained for one epoch on it (near-random weights: the point is the size, not the accuracy).

    paths = make_many_class_library(tmp / "lib", tmp / "data", num_classes=1000)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asl_core.checkpoint import save_checkpoint
from asl_core.data import DatasetSpec, build_splits
from asl_core.training import TrainConfig, train


def write_image_folder(root: Path, num_classes: int, per_class: int = 8, side: int = 8, seed: int = 0) -> Path:
    """``root/n0000/0.png`` ...: ``per_class`` images of each class (written once; reused)."""
    from PIL import Image

    done = root / ".complete"
    if done.exists() and done.read_text() == f"{num_classes} {per_class} {side} {seed}":
        return root
    rng = np.random.default_rng(seed)
    protos = rng.random((num_classes, side, side))
    for c in range(num_classes):
        folder = root / f"n{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(0.7 * protos[c] + 0.3 * rng.random((side, side)), 0, 1)
            Image.fromarray((img * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    done.write_text(f"{num_classes} {per_class} {side} {seed}")
    return root


def many_class_spec(data_root: Path, num_classes: int) -> DatasetSpec:
    return DatasetSpec(source="folder", root=str(data_root), name=f"generated-{num_classes}", val_per_class=1,
                       test_per_class=5, image_size=8, channels=1, seed=0)


def make_many_class_library(folder: Path, data_root: Path, num_classes: int,
                            methods: tuple[str, ...] = ("baseline", "asloss")) -> dict[str, Path]:
    """Two checkpoints of ``num_classes`` classes on a generated image folder (one epoch each)."""
    write_image_folder(data_root, num_classes)
    spec = many_class_spec(data_root, num_classes)
    splits = build_splits(spec)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, method in enumerate(methods):
        config = TrainConfig(method=method, arch="digits_cnn", epochs=1, batch_size=128, seed=i, device="cpu")
        result = train(config, spec, splits=splits, progress=False, name=method)
        paths[method] = save_checkpoint(result.model, result.meta, folder / method)
    return paths
