"""Teachers that have to be trained: out-of-fold stand-ins (METHODS.md section 2), and the
source a student learns from. This module sits above the training loop (it trains the
stand-ins with it); the loop itself only calls a teacher source
(:mod:`asl_core.training.teachers`) that it is given.

    source = prepare_teacher(config, teacher_ckpt, splits)      # live, fixed, or oof (trains/caches K stand-ins)
    result = train(config, spec, teacher=source, splits=splits)

Fold stand-ins are cached as checkpoints under the disk cache (``fold-baselines/``), keyed by the
data, the teacher's recipe and the fold, and recorded by content hash in the student's metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from asl_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from asl_core.data import Splits
from asl_core.errors import CheckpointError, UserError
from asl_core.objectives import get_objective, method_names
from asl_core.settings import get_settings
from asl_core.training.config import TrainConfig
from asl_core.training.loop import check_teacher, train
from asl_core.training.teachers import (FixedTeacher, FoldTeachers, LiveTeacher, OutOfFoldTeacher, TeacherSource,
                                        stratified_folds)

FOLD_CACHE_VERSION = "fold-baselines/1"


def baseline_recipe(config: TrainConfig, teacher: LoadedCheckpoint) -> TrainConfig:
    """The teacher's own training recipe, from its metadata (for its out-of-fold stand-ins): its
    method and that method's hyperparameters too (a logit-adjusted teacher's stand-ins are
    logit-adjusted)."""
    hp = teacher.meta.hyperparams or {}
    method = teacher.meta.method if teacher.meta.method in method_names() else "baseline"
    same = {k: hp[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "sampler") if k in hp}
    own = {k: hp[k] for k in get_objective(method).params if k in hp}
    aug = hp.get("augmentation", "unrecorded")
    if aug is None:
        same["augment"] = False
    elif isinstance(aug, dict):
        same.update(augment=True, aug_rotation=aug.get("rotation", config.aug_rotation),
                    aug_shift=aug.get("shift", config.aug_shift), aug_scale=aug.get("scale", config.aug_scale))
    return dataclasses.replace(config, method="baseline", method_params={}, arch=teacher.meta.arch, **same).with_params(method, **own)


def prepare_teacher(config: TrainConfig, teacher: LoadedCheckpoint | None, splits: Splits,
                    folds: FoldTeachers | None = None, progress: bool = False) -> TeacherSource:
    """The teacher source for ``config.teacher_mode``: ``live`` and ``fixed`` from the checkpoint;
    ``oof`` from ``folds``, or from K stand-ins trained here with the teacher's recipe (cached)."""
    check_teacher(teacher, config.method, splits)
    if config.teacher_mode == "live":
        return LiveTeacher(teacher)
    if config.teacher_mode == "fixed":
        return FixedTeacher(teacher, splits.train)
    if folds is None:
        recipe = baseline_recipe(config, teacher)
        base_seed = int(teacher.meta.hyperparams.get("seed", config.seed))
        folds = train_fold_baselines(recipe, splits, config.teacher_folds, base_seed, get_settings().cache_dir / "training",
                                     progress=progress)
    if len(folds.fold_of) != len(splits.train):
        raise UserError(f"the out-of-fold teachers cover {len(folds.fold_of)} training samples; the data has {len(splits.train)}")
    return OutOfFoldTeacher(folds, teacher=teacher)


def _fold_key(splits: Splits, recipe: dict, k: int, fold: int, seed: int) -> str:
    ident = {"v": FOLD_CACHE_VERSION, "data": splits.spec.to_dict(), "recipe": recipe, "k": k, "fold": fold, "seed": seed}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]


def train_fold_baselines(config, splits: Splits, k: int, seed: int, cache_dir: Path | None = None,
                         progress: bool = False) -> FoldTeachers:
    """K teachers with ``config``'s recipe (the teacher's own ``TrainConfig``: the baseline's, or the
    logit-adjusted model's for ``clonal+la``), each on the training split minus one fold; cached
    under ``cache_dir/fold-baselines`` when given."""
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
        train_split = splits.train.subset(keep)
        fold_splits = dataclasses.replace(splits, train=train_split, stats=(splits.mean, splits.std))
        fold_config = dataclasses.replace(config, seed=seed * 100 + fold + 1)
        result = train(fold_config, splits.spec, splits=fold_splits, progress=progress, name=f"fold{fold}-of-{k}")
        ckpt = LoadedCheckpoint(model=result.model, meta=result.meta)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(result.model, result.meta, path)
            ckpt = load_checkpoint(path)
        models.append(ckpt)
    return FoldTeachers(models=models, fold_of=fold_of)
