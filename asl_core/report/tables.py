"""Report tables as DataFrames, and the sentences that go with them. One home for each, used by
the CLI's HTML report, the app's pages and its downloads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from asl_core.engine.analysis import Comparison, ModelAnalysis
from asl_core.engine.story import Headline, Neighbourhood


def format_p(p: float) -> str:
    """A p-value as people read it: ``p = 0.032``, ``p = 0.41``, ``p < 0.001`` (never a long string of zeros)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def mcnemar_sentence(reference: str, other: str, mc: dict[str, Any]) -> str:
    """McNemar's exact test on paired predictions, in one sentence."""
    verdict = "a significant difference at the 5% level" if mc["pvalue"] < 0.05 else "no significant difference at the 5% level"
    return (f"McNemar's exact test: {reference} right and {other} wrong on b = {mc['b']} samples, {reference} wrong and "
            f"{other} right on c = {mc['c']} (n = {mc['n']}); two-sided {format_p(mc['pvalue'])}: {verdict}.")


def summary_table(cmp: Comparison) -> pd.DataFrame:
    """One row per model: classification figures, the projection's trustworthiness, McNemar's p."""
    rows = []
    for m in cmp.models:
        row = {"model": m.name, "method": m.method, "architecture": m.arch, "accuracy": round(m.metrics["accuracy"], 3),
               "macro-F1": round(m.metrics["macro_f1"], 3), "trustworthiness": round(m.projection.trustworthiness, 3),
               "n": m.metrics["n"]}
        # as people read it ("p < 0.001"), never a long string of zeros
        row["McNemar p vs " + cmp.reference.name] = format_p(m.mcnemar["pvalue"]) if m.mcnemar is not None else "—"
        rows.append(row)
    return pd.DataFrame(rows)


FLIP_COLUMNS = {"net": "net", "wrong_to_right": "wrong→right", "right_to_wrong": "right→wrong", "both_right": "both ✓",
                "both_wrong": "both ✗", "n": "n"}


def flip_table(cmp: Comparison, m: ModelAnalysis) -> pd.DataFrame:
    """Per true class: the net change (wrong->right minus right->wrong) first, then the flips of
    ``m`` against the reference; short headers so the table fits a narrow column."""
    flips = m.flips or {}
    return pd.DataFrame([{"class": cmp.class_names[c], **{label: flips[k][i] for k, label in FLIP_COLUMNS.items() if k in flips}}
                         for i, c in enumerate(flips.get("class", []))])


def recall_table(cmp: Comparison) -> pd.DataFrame:
    """Per-class recall of every model (one row per model)."""
    return pd.DataFrame([{"model": m.name, **{f"recall {c}": r for c, r in zip(cmp.class_names, m.metrics["per_class_recall"])}}
                         for m in cmp.models])


def export_table(cmp: Comparison) -> pd.DataFrame:
    """One row per projected sample with, per model, x/y, prediction, confidence and correctness
    (columns prefixed with the model's name)."""
    ref = cmp.reference
    rows = ref.projection.sample
    data: dict[str, Any] = {"sample_index": ref.features.index[rows], "label": ref.features.labels[rows],
                            "label_name": [cmp.class_names[y] for y in ref.features.labels[rows]]}
    for m in cmp.models:
        f, p = m.features, m.projection
        data.update({f"{m.name}_x": p.coords[:, 0], f"{m.name}_y": p.coords[:, 1], f"{m.name}_pred": f.preds[rows],
                     f"{m.name}_confidence": f.confidence[rows], f"{m.name}_correct": f.preds[rows] == f.labels[rows]})
    return pd.DataFrame(data)


# --------------------------------------------------------------------------- the story in words


def _signed(v: float, digits: int = 3) -> str:
    """``+0.023``, ``−0.010``; a value that would print as ±0.000 but is not zero gets one more
    decimal (``−0.0004``), and zero is ``0.000`` (never ``−0.000``)."""
    if v == 0 or round(v, digits) == 0 and digits == 0:
        return f"{0:.{digits}f}"
    if round(v, digits) == 0:
        return f"{v:+.{digits + 1}f}".replace("-", "−")
    return f"{v:+.{digits}f}".replace("-", "−")


def _interval(d: dict[str, float]) -> str:
    return f"{_signed(d['delta'])} [{_signed(d['low'])}, {_signed(d['high'])}]"


SEPARABILITY_WORDS = {"silhouette": ("silhouette", True), "knn_accuracy": ("k-NN accuracy", True),
                      "within_between_ratio": ("within/between distance", False)}


def headline_lines(h: Headline, class_names) -> list[str]:
    """The headline of one compared model as markdown lines: the verdict, the two differences
    with their intervals, the classes that gained and lost most, the layer's separability."""
    pct = round(h.level * 100)
    acc_excludes_zero = h.accuracy["low"] > 0 or h.accuracy["high"] < 0
    if h.significant:
        direction = "more" if h.accuracy["delta"] > 0 else "fewer"
        verdict = (f"**{h.model} gets {direction} samples right than {h.reference}, and the difference is significant** "
                   f"(McNemar's exact test, {format_p(h.pvalue)}).")
    elif acc_excludes_zero:
        verdict = (f"**Borderline: {h.model} vs {h.reference}.** The bootstrap interval of the accuracy difference excludes 0, "
                   f"but McNemar's exact test does not reject at the 5% level ({format_p(h.pvalue)}); treat it as unconfirmed.")
    else:
        verdict = (f"**No significant difference between {h.model} and {h.reference}** (McNemar's exact test, "
                   f"{format_p(h.pvalue)}): on these {h.n} samples the change could be chance.")
    if h.collapsed:
        worst = "; ".join(f"class {class_names[c]} {a:.2f} → {b:.2f}" for c, a, b in h.collapsed[:3])
        more = f" (and {len(h.collapsed) - 3} more)" if len(h.collapsed) > 3 else ""
        verdict += (f" **But recall collapsed** (to 0, or by more than half) for {len(h.collapsed)} "
                    f"class{'es' if len(h.collapsed) > 1 else ''}: {worst}{more}.")
    if h.split == "train":
        verdict += (" ⚠ This is the **training** split: the models saw these samples, so the difference says how "
                    "well each fits its training data, not how it generalises.")
    lines = [verdict,
             f"Accuracy {h.accuracy['a']:.3f} → {h.accuracy['b']:.3f}, difference {_interval(h.accuracy)}; macro-F1 "
             f"{h.macro_f1['a']:.3f} → {h.macro_f1['b']:.3f}, difference {_interval(h.macro_f1)} "
             f"({pct}% paired bootstrap intervals over the {h.n} samples, {h.n_boot} resamples; "
             + ("the macro-F1 interval excludes 0)." if h.f1_interval_excludes_zero else "the macro-F1 interval includes 0).")]

    def classes(items, digits: int) -> str:
        return ", ".join(f"class {class_names[c]} ({_signed(v, digits)})" for c, v in items) or "none"

    lines.append(f"Per-class F1 (as in the per-class chart) · rose most: {classes(h.f1_gained, 2)} · fell most: "
                 f"{classes(h.f1_lost, 2)}. Net samples of the class now right (wrong→right minus right→wrong, i.e. the "
                 f"change of its recall) · most gained: {classes(h.gained, 0)} · most lost: {classes(h.lost, 0)}.")
    if h.separability:
        parts = []
        for key, (a, b) in h.separability.items():
            label, higher_better = SEPARABILITY_WORDS[key]
            better = (b > a) == higher_better
            arrow = "better" if better and a != b else ("worse" if a != b else "same")
            parts.append(f"{label} {a:.3f} → {b:.3f} ({arrow})")
        lines.append(f"Separability of `{h.layer}` (full-dimensional features): " + "; ".join(parts) + ".")
    return lines


METRIC_LABELS = {"recall": "recall", "precision": "precision", "f1": "F1"}


def per_class_table(rows: list[dict[str, Any]], metrics: tuple[str, ...] = ("recall", "precision", "f1")) -> pd.DataFrame:
    """Wide per-class table from ``story.per_class_rows``: one row per class with its training count,
    a tail mark, its test count, and per model each of ``metrics`` (``"{model} F1"``), then the
    change of each against the first model (``"Δ F1 {model}"``)."""
    out: dict[int, dict[str, Any]] = {}
    deltas: dict[int, dict[str, Any]] = {}
    for r in rows:
        row = out.setdefault(r["class"], {"class": r["class_name"], "train n": r["train_count"],
                                          "tail": "tail" if r["tail"] else "", "test n": r["support"]})
        m = r["model"]
        for key in metrics:
            row[f"{m} {METRIC_LABELS[key]}"] = round(r[key], 3)
            if r[f"d_{key}"] is not None:
                deltas.setdefault(r["class"], {})[f"Δ {METRIC_LABELS[key]} {m}"] = round(r[f"d_{key}"], 3)
    return pd.DataFrame([{**row, **deltas.get(c, {})} for c, row in out.items()])


def sample_table(cmp: Comparison) -> pd.DataFrame:
    """One row per sample of the split: ``sample`` (dataset index), ``true`` (class name), per model
    ``{name} pred`` and ``{name} conf``, ``flipped`` (correct in some models, wrong in others) and
    ``wrong in all``. The hidden ``_true``/``_pred {name}`` columns hold class indices for filtering."""
    ref = cmp.reference
    names = cmp.class_names
    data: dict[str, Any] = {"sample": ref.features.index.astype(int), "true": [names[y] for y in ref.features.labels],
                            "_true": ref.features.labels.astype(int)}
    correct = []
    for m in cmp.models:
        f = m.features
        data[f"{m.name} pred"] = [names[p] for p in f.preds]
        data[f"{m.name} conf"] = np.round(f.confidence.astype(float), 3)
        data[f"_pred {m.name}"] = f.preds.astype(int)
        correct.append(f.preds == f.labels)
    right = np.stack(correct)
    data["flipped"] = right.any(axis=0) & ~right.all(axis=0)
    data["wrong in all"] = ~right.any(axis=0)
    return pd.DataFrame(data)


def filter_samples(table: pd.DataFrame, *, flipped: bool = False, wrong_in_all: bool = False,
                   true_classes: list[int] | None = None, predicted: list[int] | None = None, model: str | None = None,
                   confidence: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Rows of ``sample_table`` that pass every filter: flipped between models, wrong in all,
    true class in ``true_classes``, ``model``'s prediction in ``predicted`` and its confidence
    within ``confidence`` (inclusive). Empty lists mean no filter; ``model`` defaults to the first."""
    lo, hi = confidence
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"confidence range must satisfy 0 <= low <= high <= 1, got {confidence}")
    model = model or next(c[len("_pred "):] for c in table.columns if c.startswith("_pred "))
    keep = np.ones(len(table), bool)
    if flipped:
        keep &= table["flipped"].to_numpy()
    if wrong_in_all:
        keep &= table["wrong in all"].to_numpy()
    if true_classes:
        keep &= table["_true"].isin(true_classes).to_numpy()
    if predicted:
        keep &= table[f"_pred {model}"].isin(predicted).to_numpy()
    conf = table[f"{model} conf"].to_numpy()
    keep &= (conf >= lo) & (conf <= hi)
    return table[keep]


def neighbour_sentence(n: Neighbourhood, class_names) -> str:
    """``baseline: 5 of 8 neighbours are 3, 2 are 5, 1 is 8 (true class 3 among 62%)``."""
    k = len(n.samples)
    parts = [f"{count} {'is' if count == 1 else 'are'} {class_names[c]}" for c, count in n.class_counts.items()]
    return (f"**{n.model}** predicts {class_names[n.pred]}; of its {k} nearest neighbours in `{n.layer}`: "
            + ", ".join(parts) + f" (its own class {class_names[n.label]}: {n.same_class_share:.0%}).")
