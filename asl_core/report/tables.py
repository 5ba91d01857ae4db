"""Report tables as DataFrames, and the sentences that go with them. One home for each, used by
the CLI's HTML report, the app's pages and its downloads."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from asl_core.engine.analysis import Comparison, ModelAnalysis


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
        row = {"model": m.name, "method": m.method, "architecture": m.arch, "accuracy": round(m.metrics["accuracy"], 4),
               "macro-F1": round(m.metrics["macro_f1"], 4), "trustworthiness": round(m.projection.trustworthiness, 4),
               "n": m.metrics["n"]}
        row["McNemar p vs " + cmp.reference.name] = float(f"{m.mcnemar['pvalue']:.4g}") if m.mcnemar is not None else None
        rows.append(row)
    return pd.DataFrame(rows)


def flip_table(cmp: Comparison, m: ModelAnalysis) -> pd.DataFrame:
    """Per true class: right->wrong and wrong->right flips of ``m`` against the reference, and the net."""
    flips = m.flips or {}
    return pd.DataFrame([{"class": cmp.class_names[c], **{k: v[i] for k, v in flips.items() if k != "class"}}
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
