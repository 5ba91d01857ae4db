"""Where a frozen baseline's logits come from when an objective needs a teacher (METHODS.md §2).

- ``live`` (default): the baseline runs on every augmented training batch, as the authors do.
- ``oof``: out-of-fold outputs for small data. The training split is cut into K stratified
  folds; K baselines, each trained without one fold (the baseline's recipe), give the logits
  for the fold they did not see -- on the same augmented batch. A baseline that memorised its
  training set otherwise answers one-hot, so the confusing set is ``{y}`` and ClonalNet's
  loss hears nothing from it.
- ``fixed``: the old way, logits on the clean training images computed once. Kept only to show
  the failure it causes (tests, and the warning it triggers).

Fold baselines are cached as checkpoints under the disk cache (``fold-baselines/``), keyed by
the data, the recipe and the fold, and recorded by content hash in the student's metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asl_core.checkpoint import LoadedCheckpoint, content_hash, load_checkpoint, save_checkpoint
from asl_core.data import Split, Splits, normalize
from asl_core.engine.features import run_model
from asl_core.errors import CheckpointError

FOLD_CACHE_VERSION = "fold-baselines/1"


class LiveTeacher:
    """The frozen baseline on the (augmented) batch itself."""

    def __init__(self, teacher: LoadedCheckpoint, device: torch.device):
        self.model = teacher.model.to(device).eval().requires_grad_(False)
        self.mean, self.std = teacher.meta.mean, teacher.meta.std

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x, self.mean, self.std)).float()


class FixedTeacher:
    """Logits on the clean training images, computed once (the memorised, uninformative way)."""

    def __init__(self, teacher: LoadedCheckpoint, split: Split, device: torch.device):
        self.device = device
        self.logits = torch.from_numpy(
            run_model(teacher.model, split, teacher.meta.mean, teacher.meta.std, (), device=device, batch_size=512).logits)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.logits[idx].to(self.device)


@dataclass
class FoldTeachers:
    """K baselines and, for every training sample (by position in the train split), the fold it
    belongs to: baseline ``k`` never saw fold ``k``."""

    models: list[LoadedCheckpoint]
    fold_of: torch.Tensor  # [N_train] int64

    @property
    def hashes(self) -> list[str]:
        return [m.meta.content_hash or content_hash(m.model.state_dict(), m.meta) for m in self.models]


class OutOfFoldTeacher:
    def __init__(self, folds: FoldTeachers, device: torch.device):
        self.teachers = [LiveTeacher(m, device) for m in folds.models]
        self.fold_of = folds.fold_of

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        folds = self.fold_of[idx.cpu()].to(x.device)
        out = None
        for k, teacher in enumerate(self.teachers):
            rows = torch.nonzero(folds == k).flatten()
            if len(rows) == 0:
                continue
            logits = teacher(x[rows], idx[rows])
            if out is None:
                out = logits.new_zeros((x.shape[0], logits.shape[1]))
            out[rows] = logits
        return out


def stratified_folds(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Fold index [N] from scikit-learn's shuffled StratifiedKFold (a class with fewer than ``k``
    images lands in fewer folds)."""
    from sklearn.model_selection import StratifiedKFold

    y = labels.numpy()
    fold_of = np.zeros(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only n members"
        for fold, (_, held) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y)):
            fold_of[held] = fold
    return torch.from_numpy(fold_of)


def _fold_key(splits: Splits, recipe: dict, k: int, fold: int, seed: int) -> str:
    ident = {"v": FOLD_CACHE_VERSION, "data": splits.spec.to_dict(), "recipe": recipe, "k": k, "fold": fold, "seed": seed}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]


def train_fold_baselines(config, splits: Splits, k: int, seed: int, cache_dir: Path | None = None,
                         progress: bool = False) -> FoldTeachers:
    """K teachers with ``config``'s recipe (the teacher's own ``TrainConfig``: the baseline's, or the
    logit-adjusted model's for ``clonal+la``), each on the training split minus one fold; cached
    under ``cache_dir/fold-baselines`` when given."""
    from asl_core.training.loop import train  # the loop imports this module

    if k < 2:
        raise ValueError("out-of-fold teachers need at least 2 folds")
    fold_of = stratified_folds(splits.train.y, k, seed)
    recipe = {key: v for key, v in config.hyperparams().items() if key != "seed"} | {"arch": config.arch,
                                                                                  "augment": config.augmentation().to_dict(),
                                                                                  "sampler": config.sampler}
    if config.method != "baseline":  # (baseline keys stay those of earlier caches)
        recipe["method"] = config.method
    models = []
    for fold in range(k):
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / "fold-baselines" / f"{_fold_key(splits, recipe, k, fold, seed)}.safetensors"
            if path.exists():
                try:
                    models.append(load_checkpoint(path))
                    continue
                except CheckpointError:
                    pass  # damaged: train it again (the old file is replaced atomically)
        keep = torch.nonzero(fold_of != fold).flatten()
        train_split = Split(x=splits.train.x[keep], y=splits.train.y[keep], index=splits.train.index[keep])
        fold_splits = dataclasses.replace(splits, train=train_split)
        fold_config = dataclasses.replace(config, seed=seed * 100 + fold + 1)
        result = train(fold_config, splits.spec, splits=fold_splits, progress=progress, name=f"fold{fold}-of-{k}")
        ckpt = LoadedCheckpoint(model=result.model, meta=result.meta)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(result.model, result.meta, path)
            ckpt = load_checkpoint(path)
        models.append(ckpt)
    return FoldTeachers(models=models, fold_of=fold_of)
