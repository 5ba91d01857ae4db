"""Where a frozen baseline's logits come from when an objective needs a teacher (METHODS.md §2).

- ``live`` (default): the baseline runs on every augmented training batch, as the authors do.
- ``oof``: out-of-fold outputs for small data. The training split is cut into K stratified
  folds; K baselines, each trained without one fold (the baseline's recipe), give the logits
  for the fold they did not see -- on the same augmented batch. A baseline that memorised its
  training set otherwise answers one-hot, so the confusing set is ``{y}`` and ClonalNet's
  loss hears nothing from it.
- ``fixed``: the old way, logits on the clean training images computed once. Kept only to show
  the failure it causes (tests, and the warning it triggers).

This module holds the teacher *sources* the loop calls (``source(x_raw, idx) -> logits``); it
never imports the loop. Training the out-of-fold stand-ins needs the loop, so that lives above
it, in :mod:`asl_core.training.teaching` (``prepare_teacher``, ``train_fold_baselines``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from asl_core.checkpoint import LoadedCheckpoint, content_hash
from asl_core.data import Split, normalize
from asl_core.engine.features import run_model
from asl_core.engine.options import InferenceOptions


class LiveTeacher:
    """The frozen baseline on the (augmented) batch itself."""

    def __init__(self, teacher: LoadedCheckpoint, device: torch.device | str = "cpu"):
        self.meta = teacher.meta
        self.model = teacher.model.eval().requires_grad_(False)
        self.mean, self.std = teacher.meta.mean, teacher.meta.std
        self.parents = {"baseline": teacher_hash(teacher), "baseline_name": teacher.meta.name or (teacher.path.stem if teacher.path else ""),
                        "teacher_mode": "live"}
        self.to(device)

    def to(self, device: torch.device | str) -> LiveTeacher:
        self.model = self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x, self.mean, self.std)).float()


class FixedTeacher:
    """Logits on the clean training images, computed once (the memorised, uninformative way)."""

    def __init__(self, teacher: LoadedCheckpoint, split: Split, device: torch.device | str = "cpu"):
        self.meta = teacher.meta
        self.device = torch.device(device)
        self.logits = torch.from_numpy(
            run_model(teacher.model, split, teacher.meta.mean, teacher.meta.std, (),
                      InferenceOptions(device=self.device, batch_size=512)).logits)
        self.parents = {**LiveTeacher(teacher).parents, "teacher_mode": "fixed"}

    def to(self, device: torch.device | str) -> FixedTeacher:
        self.device = torch.device(device)
        return self

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
        return [teacher_hash(m) for m in self.models]


class OutOfFoldTeacher:
    """Each sample's logits from the stand-in that never saw it. ``teacher`` (the full teacher the
    stand-ins replace) is what the checkpoint names as its baseline."""

    def __init__(self, folds: FoldTeachers, device: torch.device | str = "cpu", teacher: LoadedCheckpoint | None = None):
        self.teachers = [LiveTeacher(m, device) for m in folds.models]
        self.fold_of = folds.fold_of
        self.meta = (teacher or folds.models[0]).meta
        self.parents = {**(LiveTeacher(teacher).parents if teacher is not None else {}), "teacher_mode": "oof",
                        "fold_baselines": ",".join(folds.hashes)}

    def to(self, device: torch.device | str) -> OutOfFoldTeacher:
        for t in self.teachers:
            t.to(device)
        return self

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


TeacherSource = LiveTeacher | FixedTeacher | OutOfFoldTeacher


def teacher_hash(teacher: LoadedCheckpoint) -> str:
    return teacher.meta.content_hash or content_hash(teacher.model.state_dict(), teacher.meta)


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
