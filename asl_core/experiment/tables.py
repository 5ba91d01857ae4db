"""Results of the multi-seed experiment and the Markdown/CSV tables made from them.

Everything here is computed from the per-seed rows (:class:`RunResult`): the summary is the
mean and sample standard deviation (ddof = 1) over seeds, and the paired comparison is the
mean over seeds of ``method - baseline`` on the same seed, with the number of seeds on which
the method is strictly higher ("wins") and equal ("ties").
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asl_core.experiment.search import SearchRecord

METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("tail_recall", "recall, 3 smallest classes"),
    ("silhouette", "silhouette (embedding)"),
)
REFERENCE = "baseline"


@dataclass(frozen=True)
class RunResult:
    """One trained model's figures on the test split (``val_macro_f1`` is its selection score)."""

    method: str
    seed: int
    accuracy: float
    macro_f1: float
    tail_recall: float
    silhouette: float
    per_class_recall: tuple[float, ...]
    val_macro_f1: float
    best_epoch: int

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class MetricSummary:
    mean: float
    std: float


@dataclass(frozen=True)
class PairedDiff:
    """``method - baseline`` over the seeds both have."""

    mean_diff: float
    std_diff: float  # sample std (ddof = 1) of the per-seed differences
    wins: int
    ties: int
    n: int


@dataclass(frozen=True)
class MethodSummary:
    method: str
    n_seeds: int
    metrics: dict[str, MetricSummary]
    paired: dict[str, PairedDiff] | None  # None for the baseline itself


def mean_std(values: Sequence[float]) -> MetricSummary:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return MetricSummary(mean, std)


def paired_diff(runs: Sequence[RunResult], method: str, metric: str, reference: str = REFERENCE) -> PairedDiff:
    ref = {r.seed: r.metric(metric) for r in runs if r.method == reference}
    mine = {r.seed: r.metric(metric) for r in runs if r.method == method}
    seeds = sorted(set(ref) & set(mine))
    if not seeds:
        raise ValueError(f"no seed has both {method!r} and {reference!r}")
    diffs = [mine[s] - ref[s] for s in seeds]
    spread = mean_std(diffs)
    return PairedDiff(spread.mean, spread.std, sum(d > 0 for d in diffs), sum(d == 0 for d in diffs), len(diffs))


def summarize(runs: Sequence[RunResult], methods: Sequence[str], reference: str = REFERENCE) -> list[MethodSummary]:
    out = []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        metrics = {m: mean_std([r.metric(m) for r in mine]) for m, _ in METRICS}
        paired = None if method == reference else {m: paired_diff(runs, method, m, reference) for m, _ in METRICS}
        out.append(MethodSummary(method, len(mine), metrics, paired))
    return out


# --------------------------------------------------------------------------- CSV


def summary_csv(summaries: Sequence[MethodSummary]) -> str:
    cols = ["method", "n_seeds"]
    for m, _ in METRICS:
        cols += [f"{m}_mean", f"{m}_std", f"{m}_diff_vs_{REFERENCE}", f"{m}_diff_std", f"{m}_wins", f"{m}_ties"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for s in summaries:
        row: list[Any] = [s.method, s.n_seeds]
        for m, _ in METRICS:
            row += [f"{s.metrics[m].mean:.6f}", f"{s.metrics[m].std:.6f}"]
            p = s.paired[m] if s.paired else None
            row += [f"{p.mean_diff:.6f}", f"{p.std_diff:.6f}", p.wins, p.ties] if p else ["", "", "", ""]
        w.writerow(row)
    return buf.getvalue()


def runs_csv(runs: Sequence[RunResult], class_names: Sequence[str]) -> str:
    cols = ["method", "seed", *[m for m, _ in METRICS], "val_macro_f1", "best_epoch", *[f"recall_{c}" for c in class_names]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in runs:
        w.writerow([r.method, r.seed, *[f"{r.metric(m):.6f}" for m, _ in METRICS], f"{r.val_macro_f1:.6f}", r.best_epoch,
                    *[f"{v:.6f}" for v in r.per_class_recall]])
    return buf.getvalue()


# --------------------------------------------------------------------------- Markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def verdicts(summaries: Sequence[MethodSummary]) -> list[str]:
    """One plain sentence per method on the primary figure (test macro-F1)."""
    out = []
    for s in summaries:
        if s.paired is None:
            continue
        p = s.paired["macro_f1"]
        word = "beats" if p.mean_diff > 0 else "does not beat"
        se = p.std_diff / math.sqrt(p.n)
        noise = "; within two standard errors of zero" if abs(p.mean_diff) < 2 * se else ""
        out.append(f"- **{s.method}** {word} the baseline on mean test macro-F1 ({p.mean_diff:+.4f}, standard error {se:.4f} "
                   f"over {p.n} paired seeds{noise}); higher on {p.wins} of {p.n} seeds, equal on {p.ties}.")
    return out


def markdown(
    *,
    title: str,
    command: str,
    setup: Sequence[str],
    summaries: Sequence[MethodSummary],
    runs: Sequence[RunResult],
    used: dict[str, dict[str, Any]],
    search: SearchRecord | None,
    search_note: str,
) -> str:
    n = max(s.n_seeds for s in summaries)
    lines = [f"# {title}", "", "Produced by (from the repository root):", "", "```", command, "```", ""]
    lines += list(setup) + [""]
    lines += [f"## Test split: mean ± std over {n} seeds", ""]
    lines += _table(["method"] + [label for _, label in METRICS],
                    [[s.method] + [f"{s.metrics[m].mean:.4f} ± {s.metrics[m].std:.4f}" for m, _ in METRICS] for s in summaries])
    lines += ["", "## Paired by seed against the baseline", "",
              "Mean over seeds of (method − baseline) on the same seed; wins = seeds where the method is strictly higher.", ""]
    rows = []
    for s in summaries:
        if s.paired is not None:
            rows.append([s.method] + [f"{s.paired[m].mean_diff:+.4f} ({s.paired[m].wins}/{s.paired[m].n} wins)" for m, _ in METRICS])
    lines += _table(["method"] + [label for _, label in METRICS], rows)
    lines += [""] + verdicts(summaries) + [""]
    lines += ["## Per seed (test split)", ""]
    lines += _table(["method", "seed"] + [label for _, label in METRICS] + ["val macro-F1", "best epoch"],
                    [[r.method, r.seed] + [f"{r.metric(m):.4f}" for m, _ in METRICS] + [f"{r.val_macro_f1:.4f}", r.best_epoch]
                     for r in runs])
    lines += ["", "## Hyperparameters used", ""]
    lines += [f"- {method}: " + ", ".join(f"{k}={v}" for k, v in params.items()) for method, params in used.items()]
    lines += ["", "## Hyperparameter search (validation split only)", "", search_note, ""]
    if search is not None:
        lines += [f"Search seeds: {', '.join(map(str, search.seeds))}. Rule: {search.rule}.", ""]
        if search.baseline_val_macro_f1:
            ref = search.baseline_val_macro_f1
            lines += [f"Baseline (no grid) on the same seeds: val macro-F1 {' / '.join(f'{v:.4f}' for v in ref)}, "
                      f"mean {sum(ref) / len(ref):.4f}.", ""]
        for m in search.methods:
            keys = list(m.grid)
            lines += [f"### {m.method}", "", "chosen: " + ", ".join(f"{k}={v}" for k, v in m.chosen.items()), ""]
            ranked = sorted(enumerate(m.scores), key=lambda t: (-t[1].mean, t[0]))
            lines += _table(keys + ["val macro-F1 per seed", "mean", ""],
                            [[s.params[k] for k in keys] + [" / ".join(f"{v:.4f}" for v in s.val_macro_f1), f"{s.mean:.4f}",
                              "chosen" if s.params == m.chosen else ""] for _, s in ranked])
            lines += [""]
    return "\n".join(lines).rstrip() + "\n"
