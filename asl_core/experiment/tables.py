"""Results of the multi-seed experiment and the Markdown/CSV tables made from them.

Everything here is computed from the per-seed rows (:class:`RunResult`): the summary is the
mean and sample standard deviation (ddof = 1) over seeds; the paired comparison is the mean
over seeds of ``row - baseline`` on the same seed, with the number of seeds on which the row
is strictly higher ("wins"), a percentile bootstrap 95% interval of that mean (seeds
resampled, 10,000 draws, fixed seed) and the smallest true difference the design detects
with 80% power at the 5% level (2.80 x the paired standard error); McNemar's exact test is
pooled over seeds (discordant counts summed).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from asl_core.experiment.search import SearchRecord, select

METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("tail_recall", "recall, 3 smallest classes"),
    ("silhouette", "silhouette (ASLoss layer)"),
    ("within_between", "within/between (ASLoss layer)"),
)
BOOTSTRAP_DRAWS = 10_000
POWER_FACTOR = 2.8016  # z(0.975) + z(0.80): the smallest detectable difference is this many standard errors
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
    within_between: float = float("nan")
    confusing_set_mean: float = float("nan")  # ClonalNet rows: mean |S| over training
    singleton_fraction: float = float("nan")  # ... and the share of samples with |S| = 1
    correct: tuple[bool, ...] = ()  # per test sample, for McNemar (not written to the CSVs)
    terms: dict[str, float] = field(default_factory=dict)  # the loss terms over the last training epoch

    def metric(self, name: str) -> float:
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the resume cache): ``correct`` as a string of 0/1."""
        d = dataclasses.asdict(self)
        d["correct"] = "".join("1" if v else "0" for v in self.correct)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        d = {k: (float("nan") if v is None else v) for k, v in d.items()}
        d["correct"] = tuple(c == "1" for c in d.get("correct", ""))
        d["per_class_recall"] = tuple(d["per_class_recall"])
        return cls(**d)


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
    ci_low: float = float("nan")  # bootstrap 95% interval of mean_diff
    ci_high: float = float("nan")

    @property
    def detectable(self) -> float:
        """The smallest true difference this many seeds detect with 80% power (two-sided 5%)."""
        return POWER_FACTOR * self.std_diff / math.sqrt(self.n) if self.n > 1 else float("nan")


@dataclass(frozen=True)
class PooledMcNemar:
    b: int  # baseline right, row wrong (summed over seeds)
    c: int  # baseline wrong, row right
    pvalue: float


@dataclass(frozen=True)
class MethodSummary:
    method: str
    n_seeds: int
    metrics: dict[str, MetricSummary]
    paired: dict[str, PairedDiff] | None  # None for the baseline itself
    mcnemar: PooledMcNemar | None = None
    confusing_set_mean: float = float("nan")
    singleton_fraction: float = float("nan")
    terms: dict[str, float] = dataclasses.field(default_factory=dict)


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
    low, high = bootstrap_interval(diffs)
    return PairedDiff(spread.mean, spread.std, sum(d > 0 for d in diffs), sum(d == 0 for d in diffs), len(diffs), low, high)


def bootstrap_interval(diffs: Sequence[float], draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``diffs`` (seeds resampled with replacement)."""
    import numpy as np

    values = np.asarray(diffs, dtype=np.float64)
    if len(values) < 2 or not np.isfinite(values).all():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pooled_mcnemar(runs: Sequence[RunResult], method: str, reference: str = REFERENCE) -> PooledMcNemar | None:
    """McNemar's exact test on the per-sample predictions, discordant pairs summed over seeds.
    The test set is the same on every seed, so this counts each sample once per seed: it
    catches a consistent per-sample effect but, unlike the paired-seed figures, it ignores the
    spread between training seeds."""
    from scipy.stats import binomtest

    ref = {r.seed: r.correct for r in runs if r.method == reference and r.correct}
    b = c = 0
    for r in runs:
        if r.method == method and r.correct and r.seed in ref:
            b += sum(1 for x, y in zip(ref[r.seed], r.correct) if x and not y)
            c += sum(1 for x, y in zip(ref[r.seed], r.correct) if y and not x)
    if b + c == 0:
        return PooledMcNemar(b, c, 1.0) if any(r.method == method and r.correct for r in runs) else None
    return PooledMcNemar(b, c, float(binomtest(c, b + c, 0.5).pvalue))


def summarize(runs: Sequence[RunResult], methods: Sequence[str], reference: str = REFERENCE) -> list[MethodSummary]:
    out = []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        metrics = {m: mean_std([r.metric(m) for r in mine]) for m, _ in METRICS}
        paired = None if method == reference else {m: paired_diff(runs, method, m, reference) for m, _ in METRICS}
        mc = None if method == reference else pooled_mcnemar(runs, method, reference)
        keys = list(dict.fromkeys(k for r in mine for k in r.terms))
        terms = {k: _nanmean([r.terms[k] for r in mine if k in r.terms]) for k in keys}
        out.append(MethodSummary(method, len(mine), metrics, paired, mc, _nanmean([r.confusing_set_mean for r in mine]),
                                 _nanmean([r.singleton_fraction for r in mine]), terms))
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


# --------------------------------------------------------------------------- CSV


def summary_csv(summaries: Sequence[MethodSummary]) -> str:
    cols = ["method", "n_seeds"]
    for m, _ in METRICS:
        cols += [f"{m}_mean", f"{m}_std", f"{m}_diff_vs_{REFERENCE}", f"{m}_diff_std", f"{m}_wins", f"{m}_ties",
                 f"{m}_diff_ci_low", f"{m}_diff_ci_high", f"{m}_detectable"]
    cols += ["mcnemar_b", "mcnemar_c", "mcnemar_p", "confusing_set_mean", "singleton_fraction"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for s in summaries:
        row: list[Any] = [s.method, s.n_seeds]
        for m, _ in METRICS:
            row += [f"{s.metrics[m].mean:.6f}", f"{s.metrics[m].std:.6f}"]
            p = s.paired[m] if s.paired else None
            row += ([f"{p.mean_diff:.6f}", f"{p.std_diff:.6f}", p.wins, p.ties, _num(p.ci_low), _num(p.ci_high), _num(p.detectable)]
                    if p else [""] * 7)
        mc = s.mcnemar
        row += [mc.b, mc.c, f"{mc.pvalue:.6g}"] if mc else ["", "", ""]
        row += [_num(s.confusing_set_mean), _num(s.singleton_fraction)]
        w.writerow(row)
    return buf.getvalue()


def _num(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6f}"


def runs_csv(runs: Sequence[RunResult], class_names: Sequence[str]) -> str:
    cols = ["method", "seed", *[m for m, _ in METRICS], "val_macro_f1", "best_epoch", "confusing_set_mean",
            "singleton_fraction", *[f"recall_{c}" for c in class_names]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in runs:
        w.writerow([r.method, r.seed, *[_num(r.metric(m)) for m, _ in METRICS], f"{r.val_macro_f1:.6f}", r.best_epoch,
                    _num(r.confusing_set_mean), _num(r.singleton_fraction), *[f"{v:.6f}" for v in r.per_class_recall]])
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
        if p.ci_low > 0:
            word = "is better than"
        elif p.ci_high < 0:
            word = "is worse than"
        else:
            word = "cannot be told apart from"
        out.append(f"- **{s.method}** {word} the baseline on test macro-F1: {p.mean_diff:+.4f}, 95% interval "
                   f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}] over {p.n} paired seeds (higher on {p.wins}); this design detects "
                   f"a true difference of {p.detectable:.4f} or more with 80% power.")
    return out


def budget_lines(search: SearchRecord | None) -> list[str]:
    """The tuning budget of every tuned row: base configurations, extensions, what a cap stopped."""
    lines: list[str] = []
    if search is not None and search.methods:
        lines += ["", "## Tuning budget per row", "",
                  f"Base configurations scored on validation (search seeds {', '.join(map(str, search.seeds))}), the same "
                  "for every tuned row; a winner at the edge of a numeric axis then extends that axis (x3 or /3) at most "
                  "the stated number of rounds. *Still at an edge* names an axis whose winner sat at an edge when the cap "
                  "stopped the extensions. Rows not listed are not tuned: the baseline (the pairing reference) and the "
                  "ablations (their parent's choice, one term removed).", ""]
        rows = []
        for m in search.methods:
            rows.append([m.method, f"{m.base_configs or len(m.scores)} ({m.design})",
                         "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in m.extended.items()) or "none",
                         len(m.scores),
                         "; ".join(f"{k} = {v} (cap: {search.extension_rounds} extension round{'s' if search.extension_rounds != 1 else ''})" for k, v in m.capped.items()) or "no",
                         ", ".join(f"{k} = {v}" for k, v in m.inherited.items()) or ""])
        lines += _table(["row", "base configs", "extended (values added)", "configs scored", "still at an edge",
                         "inherited"], rows)
    return lines


def search_lines(search: SearchRecord | None, search_note: str) -> list[str]:
    """Every configuration the search scored, per row, best first."""
    lines: list[str] = []
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
                              "chosen" if {**m.inherited, **s.params} == m.chosen else ""] for _, s in ranked])
            lines += [""]
    return lines


def search_markdown(*, title: str, command: str, setup: Sequence[str], search: SearchRecord, search_note: str,
                    missing: str) -> str:
    """The report of a search whose test seeds have not run (yet): what each tuned row scored on
    validation at the same budget, and what is missing."""
    lines = [f"# {title}", "", "Produced by (from the repository root):", "", "```", command, "```", ""]
    lines += list(setup) + ["", missing, "", "## Validation macro-F1 at an equal tuning budget", ""]
    ref = search.baseline_val_macro_f1
    ref_mean = sum(ref) / len(ref) if ref else float("nan")
    lines += [f"Search seeds {', '.join(map(str, search.seeds))}; the untuned baseline scores {ref_mean:.4f}. Each row's best "
              "configuration (the one the table would use), with the difference to the baseline on the same seeds. One "
              "seed's validation split (500 images) is not a test result: it says which settings each row would take into "
              "the paired test runs, and how far apart the rows sit before those runs.", ""]
    rows = []
    for m in sorted(search.methods, key=lambda m: -select(m.scores).mean):
        best = select(m.scores)
        rows.append([m.method, len(m.scores), ", ".join(f"{k}={v}" for k, v in m.chosen.items()), f"{best.mean:.4f}",
                     f"{best.mean - ref_mean:+.4f}"])
    lines += _table(["row", "configs scored", "chosen", "val macro-F1", "− baseline"], rows)
    lines += budget_lines(search)
    lines += search_lines(search, search_note)
    return "\n".join(lines).rstrip() + "\n"


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
    compare_to: Sequence[str] = (),
) -> str:
    n = max(s.n_seeds for s in summaries)
    lines = [f"# {title}", "", "Produced by (from the repository root):", "", "```", command, "```", ""]
    lines += list(setup) + [""]
    lines += [f"## Test split: mean ± std over {n} seeds", ""]
    lines += _table(["method"] + [label for _, label in METRICS],
                    [[s.method] + [f"{s.metrics[m].mean:.4f} ± {s.metrics[m].std:.4f}" for m, _ in METRICS] for s in summaries])
    lines += ["", "## Paired by seed against the baseline", "",
              "Mean over seeds of (row − baseline) on the same seed, its bootstrap 95% interval, and wins = seeds where "
              "the row is strictly higher. *Detectable*: the smallest true difference this number of seeds finds with 80% "
              "power (2.80 × paired standard error).", ""]
    rows = []
    for s in summaries:
        if s.paired is not None:
            rows.append([s.method] + [f"{s.paired[m].mean_diff:+.4f} [{s.paired[m].ci_low:+.4f}, {s.paired[m].ci_high:+.4f}] "
                                      f"({s.paired[m].wins}/{s.paired[m].n})" for m, _ in METRICS]
                        + [f"{s.paired['macro_f1'].detectable:.4f}"])
    lines += _table(["row"] + [label for _, label in METRICS] + ["detectable (macro-F1)"], rows)
    lines += ["", "McNemar's exact test on per-sample correctness, discordant pairs summed over seeds (b: baseline right and "
              "row wrong; c: the reverse). It ignores the spread between training seeds, so it overstates certainty; the "
              "intervals above do not.", ""]
    lines += _table(["row", "b", "c", "p"], [[s.method, s.mcnemar.b, s.mcnemar.c, f"{s.mcnemar.pvalue:.3g}"]
                                             for s in summaries if s.mcnemar is not None])
    present = {s.method for s in summaries}
    for ref in [r for r in compare_to if r in present]:
        lines += ["", f"## Paired by seed against {ref}", "",
                  f"Test macro-F1 of each row minus {ref} on the same seed: mean, bootstrap 95% interval, (seeds where the "
                  f"row is higher / seeds), and the smallest difference the design detects with 80% power.", ""]
        rows = []
        for s in summaries:
            if s.method == ref:
                continue
            d = paired_diff(runs, s.method, "macro_f1", ref)
            rows.append([s.method, f"{d.mean_diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] ({d.wins}/{d.n})", f"{d.detectable:.4f}"])
        lines += _table(["row", f"macro-F1 − {ref}", "detectable"], rows)
    lines += budget_lines(search)
    termed = [s for s in summaries if s.terms]
    if termed:
        lines += ["", "Loss terms over the last training epoch, mean over seeds (raw values, before their weights; "
                  "the weights are under *Hyperparameters used*). `ce_la` is the logit-adjusted cross-entropy, `r_neg` / "
                  "`fp_neg` the negative entropy sum p log p, `<layer>.agg/sep/scope` ASLoss's terms.", ""]
        lines += _table(["row", "terms"], [[s.method, ", ".join(f"{k} {v:.4g}" for k, v in s.terms.items())] for s in termed])
    mech = [s for s in summaries if not math.isnan(s.confusing_set_mean)]
    if mech:
        lines += ["", "ClonalNet's mechanism: the confusing set S over training (METHODS.md §2; |S| = 1 means the "
                  "teacher said nothing beyond the label).", ""]
        lines += _table(["row", "mean \\|S\\|", "share with \\|S\\| = 1"],
                        [[s.method, f"{s.confusing_set_mean:.3f}", f"{s.singleton_fraction:.1%}"] for s in mech])
    lines += [""] + verdicts(summaries) + [""]
    lines += ["## Per seed (test split)", ""]
    lines += _table(["method", "seed"] + [label for _, label in METRICS] + ["val macro-F1", "best epoch"],
                    [[r.method, r.seed] + [f"{r.metric(m):.4f}" for m, _ in METRICS] + [f"{r.val_macro_f1:.4f}", r.best_epoch]
                     for r in runs])
    extended = [m for m in (search.methods if search else ()) if getattr(m, "extended", None)]
    if extended:
        lines += [""] + [f"- Search grid of **{m.method}** extended after its winner sat at an edge: "
                         + "; ".join(f"{k} += {v}" for k, v in m.extended.items()) + "." for m in extended]
    lines += ["", "## Hyperparameters used", ""]
    lines += [f"- {method}: " + ", ".join(f"{k}={v}" for k, v in params.items()) for method, params in used.items()]
    lines += search_lines(search, search_note)
    return "\n".join(lines).rstrip() + "\n"
