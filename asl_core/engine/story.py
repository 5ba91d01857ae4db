"""What changed between compared models, in numbers a page can put into words: the headline
per compared model (accuracy and macro-F1 differences with paired bootstrap intervals,
McNemar's p, the classes that gained and lost most, the change in the layer's separability),
the per-class table with each class's training count, and a sample's nearest neighbours in
every model's full-dimensional features.

    heads = [headline(cmp, m) for m in cmp.models[1:]]
    rows = per_class_rows(cmp)
    near = neighbours(cmp, sample_id=123, k=8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from asl_core.data import DatasetSpec
from asl_core.engine.analysis import Comparison, ModelAnalysis, splits_for
from asl_core.engine.metrics import bootstrap_difference, nearest_neighbours, per_class_scores
from asl_core.errors import UserError

ALPHA = 0.05
SEPARABILITY_KEYS = ("silhouette", "knn_accuracy", "within_between_ratio")  # higher, higher, lower is better
TAIL_SIZE = 3  # the benchmark reports the recall of the 3 smallest classes


def train_counts(cmp: Comparison) -> list[int]:
    """Training samples per class, rebuilt from the dataset spec the checkpoints record."""
    splits = splits_for(DatasetSpec.from_dict(dict(cmp.dataset)))
    return splits.train.class_counts(cmp.num_classes)


def tail_classes(counts: list[int], k: int = TAIL_SIZE) -> list[int]:
    """The ``k`` classes with the fewest training samples, or none when the training set is
    balanced (largest class under twice the smallest): a tail needs a long tail."""
    if not counts or max(counts) < 2 * max(min(counts), 1):
        return []
    return sorted(sorted(range(len(counts)), key=lambda c: (counts[c], c))[:k])


@dataclass(frozen=True)
class Headline:
    """One compared model against the reference. ``accuracy``/``macro_f1``: ``{a, b, delta, low,
    high}`` (B - A with a paired bootstrap interval at ``level``); ``pvalue``: McNemar's exact p;
    ``gained``/``lost``: ``(class, net flips)`` with the largest positive / negative net, largest
    first (net flips of a class = the change of its recall times its test count);
    ``f1_gained``/``f1_lost``: ``(class, change of F1)``, the measure the per-class chart opens on;
    ``collapsed``: ``(class, recall a, recall b)`` for every class whose recall fell to 0 or by more
    than half (whatever McNemar says about the whole); ``separability``: ``{key: (a, b)}`` on ``layer``."""

    reference: str
    model: str
    n: int
    accuracy: dict[str, float]
    macro_f1: dict[str, float]
    pvalue: float
    level: float
    n_boot: int
    gained: tuple[tuple[int, int], ...]
    lost: tuple[tuple[int, int], ...]
    layer: str
    separability: dict[str, tuple[float, float]]
    collapsed: tuple[tuple[int, float, float], ...] = ()
    f1_gained: tuple[tuple[int, float], ...] = ()
    f1_lost: tuple[tuple[int, float], ...] = ()
    split: str = "test"

    @property
    def significant(self) -> bool:
        """McNemar's test rejects equal error rates at ``ALPHA``."""
        return self.pvalue < ALPHA

    @property
    def f1_interval_excludes_zero(self) -> bool:
        return self.macro_f1["low"] > 0 or self.macro_f1["high"] < 0


def headline(cmp: Comparison, m: ModelAnalysis, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
             top: int = 3) -> Headline:
    """The headline of ``m`` (not the reference) against ``cmp.reference``."""
    ref = cmp.reference
    if m.mcnemar is None or m.flips is None:
        raise UserError(f"{m.name} is the reference; a headline compares another model with it")
    y = ref.features.labels
    boot = bootstrap_difference(y, ref.features.preds, m.features.preds, cmp.num_classes, n_boot=n_boot, seed=seed,
                                level=level)
    acc = {"a": ref.metrics["accuracy"], "b": m.metrics["accuracy"], **boot["accuracy"]}
    f1 = {"a": ref.metrics["macro_f1"], "b": m.metrics["macro_f1"], **boot["macro_f1"]}
    net = list(zip(m.flips["class"], m.flips["net"]))
    gained = tuple(sorted(((c, v) for c, v in net if v > 0), key=lambda t: (-t[1], t[0]))[:top])
    lost = tuple(sorted(((c, v) for c, v in net if v < 0), key=lambda t: (t[1], t[0]))[:top])
    sep_a, sep_b = ref.separability.get(cmp.layer, {}), m.separability.get(cmp.layer, {})
    sep = {k: (float(sep_a[k]), float(sep_b[k])) for k in SEPARABILITY_KEYS if k in sep_a and k in sep_b}
    sa = per_class_scores(y, ref.features.preds, cmp.num_classes)
    sb = per_class_scores(y, m.features.preds, cmp.num_classes)
    collapsed = tuple(sorted(((c, float(ra), float(rb)) for c, (ra, rb) in enumerate(zip(sa["recall"], sb["recall"]))
                              if collapsed_recall(ra, rb)), key=lambda t: (t[2] - t[1], t[0])))
    df1 = [(c, float(b - a)) for c, (a, b) in enumerate(zip(sa["f1"], sb["f1"]))]
    f1_gained = tuple(sorted((t for t in df1 if t[1] > 0), key=lambda t: (-t[1], t[0]))[:top])
    f1_lost = tuple(sorted((t for t in df1 if t[1] < 0), key=lambda t: (t[1], t[0]))[:top])
    return Headline(reference=ref.name, model=m.name, n=int(y.size), accuracy=acc, macro_f1=f1,
                    pvalue=float(m.mcnemar["pvalue"]), level=level, n_boot=n_boot, gained=gained, lost=lost,
                    layer=cmp.layer, separability=sep, collapsed=collapsed, f1_gained=f1_gained, f1_lost=f1_lost,
                    split=cmp.split)


def collapsed_recall(before: float, after: float) -> bool:
    """A class's recall collapsed: it had some and fell to 0, or it fell by more than half."""
    return before > 0 and (after == 0 or after < before / 2)


def per_class_rows(cmp: Comparison) -> list[dict[str, Any]]:
    """One row per (class, model): ``class``, ``class_name``, ``train_count``, ``tail``, ``model``,
    ``recall``, ``precision``, ``f1``, ``support`` and, for models after the reference,
    ``d_recall``/``d_precision``/``d_f1`` (model minus reference; ``None`` for the reference)."""
    counts = train_counts(cmp)
    tail = set(tail_classes(counts))
    y = cmp.reference.features.labels
    scores = [per_class_scores(y, m.features.preds, cmp.num_classes) for m in cmp.models]
    rows = []
    for c, name in enumerate(cmp.class_names):
        for i, (m, s) in enumerate(zip(cmp.models, scores)):
            row = {"class": c, "class_name": name, "train_count": counts[c], "tail": c in tail, "model": m.name,
                   "recall": s["recall"][c], "precision": s["precision"][c], "f1": s["f1"][c], "support": s["support"][c]}
            for key in ("recall", "precision", "f1"):
                row[f"d_{key}"] = None if i == 0 else s[key][c] - scores[0][key][c]
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Neighbourhood:
    """A sample's ``k`` nearest neighbours in one model's ``layer`` features (Euclidean, full
    dimension). ``samples``/``labels``/``preds``/``distances``: ``[k]``, nearest first;
    ``class_counts``: ``{class: count}`` among the neighbours, most frequent first."""

    model: str
    layer: str
    sample: int
    label: int
    pred: int
    samples: tuple[int, ...]
    labels: tuple[int, ...]
    preds: tuple[int, ...]
    distances: tuple[float, ...]
    class_counts: dict[int, int]

    @property
    def same_class_share(self) -> float:
        return float(np.mean(np.asarray(self.labels) == self.label)) if self.labels else float("nan")


def neighbours(cmp: Comparison, sample_id: int, k: int = 8, layer: str | None = None) -> list[Neighbourhood]:
    """``sample_id``'s neighbours in every model (on ``layer``, default the projected one)."""
    layer = layer or cmp.layer
    out = []
    for m in cmp.models:
        f = m.features
        if layer not in f.layers:
            raise UserError(f"layer {layer!r} was not extracted for {m.name}; pick the projected layer")
        rows = np.flatnonzero(f.index == int(sample_id))
        if rows.size == 0:
            raise UserError(f"sample {sample_id} is not in the {cmp.split} split")
        row = int(rows[0])
        idx, dist = nearest_neighbours(f.layers[layer], [row], k)
        idx, dist = idx[0], dist[0]
        labels = f.labels[idx]
        values, counts = np.unique(labels, return_counts=True)
        order = sorted(zip(values.tolist(), counts.tolist()), key=lambda t: (-t[1], t[0]))
        out.append(Neighbourhood(model=m.name, layer=layer, sample=int(sample_id), label=int(f.labels[row]),
                                 pred=int(f.preds[row]), samples=tuple(int(s) for s in f.index[idx]),
                                 labels=tuple(int(v) for v in labels), preds=tuple(int(v) for v in f.preds[idx]),
                                 distances=tuple(float(d) for d in dist), class_counts=dict(order)))
    return out
