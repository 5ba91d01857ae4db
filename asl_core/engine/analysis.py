"""Compare 1-3 models on the same data: features, aligned projections, classification
metrics, per-layer separability and, against the first (reference) model, the confusion
delta, the flip table and McNemar's test. Used by the app and by ``asl-lens analyze``.

    cmp = compare([load_checkpoint(a), load_checkpoint(b)], split="test", cache=DiskCache())
    cmp.models[1].mcnemar["pvalue"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from asl_core.engine.cache import (DiskCache, cached_features, cached_features_only, cached_projections,
                                   cached_separability, checkpoint_hash)
from asl_core.checkpoint import LoadedCheckpoint
from asl_core.data import DatasetSpec, Splits, build_splits
from asl_core.errors import LayerError, UserError
from asl_core.engine.features import Features
from asl_core.engine.options import InferenceOptions
from asl_core.engine.metrics import (classification_metrics, confusion, confusion_normalized, delta_confusion, flip_table,
                                     mcnemar)
from asl_core.models import embedding_layer, list_layers
from asl_core.engine.projection import Projection, ProjectionConfig

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ModelAnalysis:
    """One model's results. ``confusion`` ``[C, C]`` counts (rows true); ``separability``
    ``{layer: {silhouette, davies_bouldin, ...}}``; ``delta`` (this minus reference, counts),
    ``flips`` and ``mcnemar`` are ``None`` for the reference itself."""

    name: str
    method: str
    arch: str
    content_hash: str
    features: Features
    projection: Projection
    metrics: dict[str, Any]
    confusion: np.ndarray
    confusion_normalized: np.ndarray
    separability: dict[str, dict[str, Any]]
    delta: np.ndarray | None = None
    delta_normalized: np.ndarray | None = None
    flips: dict[str, list[int]] | None = None
    mcnemar: dict[str, float] | None = None


@dataclass(frozen=True)
class Comparison:
    """``models[0]`` is the reference. ``layer`` is the projected layer; ``metric_layers`` the
    layers with separability figures. ``notes`` gathers sampling and other caveats."""

    models: tuple[ModelAnalysis, ...]
    layer: str
    metric_layers: tuple[str, ...]
    split: str
    class_names: tuple[str, ...]
    projection_config: ProjectionConfig
    dataset: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    @property
    def reference(self) -> ModelAnalysis:
        return self.models[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per (model, layer): name, layer, the separability figures, n_used."""
        keys = ("silhouette", "davies_bouldin", "calinski_harabasz", "knn_accuracy", "within_between_ratio", "n_used")
        return [{"model": m.name, "layer": layer, **{k: s[k] for k in keys}}
                for m in self.models for layer, s in m.separability.items()]


@lru_cache(maxsize=4)
def _splits_for_key(key: str) -> Splits:
    return build_splits(DatasetSpec.from_dict(json.loads(key)))


def splits_for(spec: DatasetSpec) -> Splits:
    """``build_splits(spec)``, kept in-process for the last few specs."""
    return _splits_for_key(spec.key())


def model_name(ckpt: LoadedCheckpoint, i: int) -> str:
    return ckpt.meta.name or (ckpt.path.stem if ckpt.path else "") or f"model {i + 1}"


def common_layers(ckpts: list[LoadedCheckpoint]) -> list[str]:
    """Layer names every model has, in the first model's order."""
    if not ckpts:
        return []
    shared = set.intersection(*(set(list_layers(c.model)) for c in ckpts))
    return [name for name in list_layers(ckpts[0].model) if name in shared]


def shared_spec(ckpts: list[LoadedCheckpoint]) -> DatasetSpec:
    """The dataset every model was trained on; a ``UserError`` when one has none or they differ."""
    names = [model_name(c, i) for i, c in enumerate(ckpts)]
    for c, name in zip(ckpts, names):
        if not c.meta.dataset:
            raise UserError(f"{name} does not record its dataset (a foreign checkpoint?); analysis needs the data it was trained on")
    specs = [DatasetSpec.from_dict(dict(c.meta.dataset)) for c in ckpts]
    for spec, name in zip(specs[1:], names[1:]):
        if spec.key() != specs[0].key():
            a, b = specs[0].to_dict(), spec.to_dict()
            diff = ", ".join(f"{k} {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k])
            raise UserError(f"{name} was trained on different data than {names[0]} ({diff}); compare models of one dataset")
    return specs[0]


def compare(
    ckpts: list[LoadedCheckpoint],
    split: str = "test",
    layer: str | None = None,
    projection: ProjectionConfig = ProjectionConfig(),
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    metric_layers: list[str] | None = None,
    options: InferenceOptions = InferenceOptions(),
) -> Comparison:
    """Analyse ``ckpts`` (first = reference) on ``split`` of their shared dataset.

    ``layer`` (default: the reference's embedding layer) is projected and must exist in every
    model; ``metric_layers`` (default ``[layer]``) get separability figures. ``progress(message,
    fraction)`` is called as work proceeds. ``options`` says how a model without cached
    features is run (device, batch size, precision)."""
    if not ckpts:
        raise UserError("pick at least one model to analyse")
    report = progress or (lambda message, fraction: None)
    spec = shared_spec(ckpts)
    class_names = tuple(ckpts[0].meta.class_names)
    for i, c in enumerate(ckpts):
        if c.meta.num_classes != len(class_names):
            raise UserError(f"{model_name(c, i)} has {c.meta.num_classes} classes; {model_name(ckpts[0], 0)} has {len(class_names)}")
    shared = common_layers(ckpts)
    layer = layer or embedding_layer(ckpts[0].meta.arch, list_layers(ckpts[0].model))
    metric_layers = list(dict.fromkeys(metric_layers or [layer]))
    for name in [layer, *metric_layers]:
        if name not in shared:
            raise LayerError(f"layer {name!r} is not in every model; layers all of them have: {', '.join(shared)}")
    wanted = list(dict.fromkeys([layer, *metric_layers]))
    names = _unique([model_name(c, i) for i, c in enumerate(ckpts)])
    steps = 2 * len(ckpts) + 1
    # the cache first: a fully cached Compare builds no split and decodes no image
    feats: list[Features | None] = [cached_features_only(cache, c, spec, split, wanted, options) for c in ckpts]
    splits: Splits | None = None
    if any(f is None for f in feats):
        report("building the dataset", 0.0)
        splits = splits_for(spec)
        if splits.num_classes != len(class_names):
            raise UserError(f"{names[0]} has {len(class_names)} classes; its dataset has {splits.num_classes}")
    for i, c in enumerate(ckpts):
        if feats[i] is not None:
            continue
        on_batch = _progress_of(report, f"extracting {', '.join(wanted)} of {names[i]}", i / steps, 1 / steps, "images")
        feats[i] = cached_features(cache, c, spec, split, wanted, splits=splits, options=options, progress=on_batch)
    labels = feats[0].labels
    stage = f"projecting {layer} of {len(labels):,} samples with {projection.method} (cached after the first time)"
    report(stage, len(ckpts) / steps)
    on_model = _progress_of(report, stage, len(ckpts) / steps, 1 / steps, "models")
    projs = cached_projections(cache, ckpts, spec, split, layer, projection, [f.layers[layer] for f in feats], labels,
                               on_model=on_model)
    c_num = len(class_names)
    ref_pred, ref_cm = feats[0].preds, confusion(labels, feats[0].preds, c_num)
    models = []
    for i, (c, f, p) in enumerate(zip(ckpts, feats, projs)):
        report(f"measuring {names[i]}", (len(ckpts) + 1 + i + 0.5) / steps)
        cm = confusion(labels, f.preds, c_num)
        sep = {name: cached_separability(cache, c, spec, split, name, f.layers[name], labels, projection.seed, options.amp)
               for name in metric_layers}
        paired: dict[str, Any] = {}
        if i > 0:
            paired = dict(delta=delta_confusion(ref_cm, cm),
                          delta_normalized=delta_confusion(confusion_normalized(ref_cm), confusion_normalized(cm)),
                          flips=flip_table(labels, ref_pred, f.preds, c_num), mcnemar=mcnemar(labels, ref_pred, f.preds))
        models.append(ModelAnalysis(
            name=names[i], method=c.meta.method, arch=c.meta.arch, content_hash=checkpoint_hash(c), features=f,
            projection=p, metrics=classification_metrics(labels, f.preds, c_num), confusion=cm,
            confusion_normalized=confusion_normalized(cm), separability=sep, **paired))
    notes = [n for n in dict.fromkeys([projs[0].note] + [s["note"] for s in models[0].separability.values()]) if n]
    notes += [f"{names[i]}: {n}" for i, f in enumerate(feats) for n in f.notes]
    # what the data build skipped (bad image files): this session's build, else what training recorded
    data_notes = splits.notes if splits is not None else (ckpts[0].meta.diagnostics or {}).get("dataset_notes", [])
    notes += [f"data: {n}" for n in data_notes if n.startswith("skipped ")]
    report("done", 1.0)
    return Comparison(models=tuple(models), layer=layer, metric_layers=tuple(metric_layers), split=split,
                      class_names=class_names, projection_config=projection, dataset=spec.to_dict(),
                      notes=tuple(notes))


def _progress_of(report: Progress, stage: str, start: float, span: float, unit: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback (extraction's batches, projection's models) that reports
    ``stage: 12,000 of 50,000 images, about 40 s left`` (the rate so far) at the right place of
    the overall fraction."""
    t0 = time.monotonic()

    def on_step(done: int, total: int) -> None:
        elapsed = time.monotonic() - t0
        left = elapsed / done * (total - done) if done else 0.0
        eta = f", about {left:.0f} s left" if done < total and elapsed > 0.5 else ""
        report(f"{stage}: {done:,} of {total:,} {unit}{eta}", start + span * done / max(total, 1))

    return on_step


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        out.append(n if n not in out else f"{n} ({len(out) + 1})")
    return out
