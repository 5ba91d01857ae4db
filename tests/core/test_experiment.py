"""The multi-seed experiment: tables, paired differences, and a search that reads validation only."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from asl_core.experiment import run as experiment
from asl_core.checkpoint import CheckpointMeta
from asl_core.data import build_splits, get_spec
from asl_core.errors import UserError
from asl_core.experiment.tables import METRICS, RunResult, summarize
from asl_core.objectives import get_objective
from asl_core.experiment.search import ConfigScore, search, select
from asl_core.training import TrainConfig, TrainResult, train

_META = CheckpointMeta(arch="digits_cnn", num_classes=10, class_names=tuple("0123456789"), input_shape=(1, 8, 8),
                       mean=(0.5,), std=(0.25,))
TINY_ARGS = ["--dataset", "digits", "--samples-per-class", "10", "--val-per-class", "5", "--test-per-class", "5",
             "--epochs", "2", "--seeds", "2", "--quiet"]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# --------------------------------------------------------------------------- CLI and tables


def test_unknown_method_is_a_one_line_error(tmp_path, capsys):
    assert experiment.main(["--methods", "baseline,magic", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'magic'" in err[0]
    with pytest.raises(UserError):
        experiment.parse_methods("clonal,kd")  # no baseline to compare with or learn from
    assert experiment.parse_methods("kd,baseline") == ("baseline", "kd")


def test_help_documents_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--methods", "--seeds", "--out", "--search", "--no-search", "--search-seeds", "--threads"):
        assert flag in out


@pytest.fixture
def keep_threads():
    """main() sets the CPU thread count (part of reproducibility); give the session its own back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_tiny_experiment_tables_and_reproducibility(tmp_path, keep_threads):
    out = tmp_path / "res" / "tiny"
    argv = ["--methods", "baseline,clonal", "--out", str(out), *TINY_ARGS]
    assert experiment.main(argv) == 0
    md, summary, runs_path = out.with_suffix(".md"), tmp_path / "res" / "tiny.csv", tmp_path / "res" / "tiny_runs.csv"
    first = {p: p.read_bytes() for p in (md, summary, runs_path)}

    text = md.read_text()
    assert "asl-lens experiment " + " ".join(argv) in text
    assert ("| method | accuracy | macro-F1 | recall, 3 smallest classes | silhouette (ASLoss layer) | "
            "within/between (ASLoss layer) |") in text
    assert "| row | b | c | p |" in text and "mean \\|S\\|" in text  # pooled McNemar; ClonalNet's mechanism
    assert "## Paired by seed against the baseline" in text

    rows = read_csv(runs_path)
    assert [(r["method"], r["seed"]) for r in rows] == [("baseline", "0"), ("baseline", "1"), ("clonal", "0"), ("clonal", "1")]
    summ = {r["method"]: r for r in read_csv(summary)}
    assert set(summ) == {"baseline", "clonal"}
    for metric, _ in METRICS:
        for col in ("mean", "std", "diff_vs_baseline", "diff_std", "wins", "ties", "diff_ci_low", "diff_ci_high", "detectable"):
            assert f"{metric}_{col}" in summ["clonal"]
        base = {r["seed"]: float(r[metric]) for r in rows if r["method"] == "baseline"}
        mine = {r["seed"]: float(r[metric]) for r in rows if r["method"] == "clonal"}
        diffs = [mine[s] - base[s] for s in base]
        assert float(summ["clonal"][f"{metric}_diff_vs_baseline"]) == pytest.approx(sum(diffs) / 2, abs=2e-6)
        assert int(summ["clonal"][f"{metric}_wins"]) == sum(d > 0 for d in diffs)
        assert summ["baseline"][f"{metric}_diff_vs_baseline"] == ""

    assert experiment.main(argv) == 0  # same command, same bytes
    assert {p: p.read_bytes() for p in first} == first


def test_summary_and_paired_differences_from_per_seed_rows():
    def run(method, seed, acc):
        return RunResult(method, seed, acc, acc / 2, 0.0, 0.1, (acc,), 0.5, 1)

    runs = [run("baseline", 0, 0.50), run("baseline", 1, 0.60), run("baseline", 2, 0.70),
            run("kd", 0, 0.55), run("kd", 1, 0.60), run("kd", 2, 0.65)]
    base, kd = summarize(runs, ["baseline", "kd"])
    assert base.paired is None
    assert kd.metrics["accuracy"].mean == pytest.approx(0.60)
    assert kd.metrics["accuracy"].std == pytest.approx(0.05)  # ddof = 1
    p = kd.paired["accuracy"]
    assert (p.mean_diff, p.wins, p.ties, p.n) == (pytest.approx(0.0), 1, 1, 3)
    assert p.std_diff == pytest.approx(0.05)  # differences +0.05, 0, -0.05
    assert kd.paired["silhouette"].ties == 3
    # bootstrap interval of the mean difference: inside the range of the differences, around the mean
    assert -0.05 - 1e-12 <= p.ci_low < 0.0 < p.ci_high <= 0.05 + 1e-12
    assert p.detectable == pytest.approx(2.8016 * 0.05 / 3 ** 0.5)


def test_pooled_mcnemar_sums_discordant_pairs_over_seeds():
    def run(method, seed, correct):
        return RunResult(method, seed, 0.5, 0.5, 0.0, 0.1, (0.5,), 0.5, 1, correct=tuple(correct))

    runs = [run("baseline", 0, [1, 1, 0, 0]), run("baseline", 1, [1, 0, 0, 0]),
            run("asloss", 0, [1, 0, 1, 1]), run("asloss", 1, [0, 1, 1, 1])]
    (_, mine) = summarize(runs, ["baseline", "asloss"])
    # seed 0: b = 1 (sample 1), c = 2; seed 1: b = 1 (sample 0), c = 3
    assert (mine.mcnemar.b, mine.mcnemar.c) == (2, 5)
    from scipy.stats import binomtest

    assert mine.mcnemar.pvalue == pytest.approx(binomtest(5, 7, 0.5).pvalue)


# --------------------------------------------------------------------------- search


class GuardedMetrics(dict):
    """Metrics whose test entry must not be read during selection."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("the search read test metrics")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == "test":
            raise AssertionError("the search read test metrics")
        return super().get(key, default)


def test_search_selects_on_validation_and_never_reads_test():
    # Validation prefers T=2, w=0.5; test (unreadable) would prefer T=8, w=2.
    def fake_train(config, spec, teacher=None, splits=None, progress=False, **_):
        hp = config.objective_params()
        val = 1.0 - abs(hp.get("kd_temperature", 2.0) - 2.0) / 10 - abs(hp.get("kd_weight", 0.5) - 0.5) / 10 + config.seed * 1e-3
        test = hp.get("kd_temperature", 0.0) + hp.get("kd_weight", 0.0)
        meta = dataclasses.replace(_META, method=config.method,
                                   metrics=GuardedMetrics(val={"macro_f1": val}, test={"macro_f1": test}))
        return TrainResult(model=None, meta=meta)

    grids = {"kd": {"kd_temperature": [4.0, 2.0, 8.0], "kd_weight": [1.0, 0.5, 2.0]}}
    record = search(["baseline", "kd"], TrainConfig(epochs=1), None, None, seeds=[7, 8], grids=grids, train_fn=fake_train)
    assert record.chosen() == {"kd": {"kd_temperature": 2.0, "kd_weight": 0.5}}
    (kd,) = record.methods
    # both winners sat at the low edge of their axis: each axis was extended once (then no longer an edge)
    assert kd.extended == {"kd_temperature": [0.6667], "kd_weight": [0.1667]}  # rounded to 4 significant digits
    assert len(kd.scores) == 11 and all(len(s.val_macro_f1) == 2 for s in kd.scores)
    assert {"kd_temperature": 0.6667, "kd_weight": 0.5} in [s.params for s in kd.scores]


def test_selection_ties_go_to_the_first_listed():
    a, b = ConfigScore({"x": 1}, (0.5, 0.7)), ConfigScore({"x": 2}, (0.7, 0.5))
    assert select([a, b]) is a and select([b, a]) is b


def test_real_search_scores_are_the_runs_validation_macro_f1():
    spec = get_spec("digits", samples_per_class=10, val_per_class=5, test_per_class=5)
    splits = build_splits(spec)
    seen = []

    def guarded_train(config, spec, **kwargs):
        result = train(config, spec, **kwargs)
        seen.append((config.method, config.objective_params().get("fp_alpha"), result.meta.metrics["val"]["macro_f1"]))
        return TrainResult(result.model, dataclasses.replace(result.meta, metrics=GuardedMetrics(result.meta.metrics)))

    grids = {"clonal": {"fp_alpha": [1.0, 0.0]}}
    record = search(["baseline", "clonal"], TrainConfig(epochs=2, device="cpu"), spec, splits, seeds=[100], grids=grids,
                    train_fn=guarded_train, extend=False)
    scores = [s.val_macro_f1[0] for s in record.methods[0].scores]
    assert scores == [v for m, _, v in seen if m == "clonal"]
    best = max(range(2), key=lambda i: (scores[i], -i))
    assert record.chosen()["clonal"] == {"fp_alpha": [1.0, 0.0][best]}


def test_recorded_search_note_flags_defaults_that_differ(tmp_path):
    configs = experiment.method_configs(["baseline", "kd"], TrainConfig(), None)
    rec = {"command": "asl-lens experiment --search", "seeds": [100], "rule": "r",
           "methods": {"kd": {"grid": {"kd_weight": [1.0, 9.0]}, "chosen": {"kd_weight": 9.0},
                              "configs": [{"params": {"kd_weight": 9.0}, "val_macro_f1": [0.5]}]}}}
    path = tmp_path / "x_search.json"
    path.write_text(json.dumps(rec))
    record, note = experiment.recorded_search(path, configs)
    assert record is not None and record.chosen() == {"kd": {"kd_weight": 9.0}}
    assert "differ" in note and "kd.kd_weight" in note
    rec["methods"]["kd"]["chosen"] = {"kd_weight": get_objective("kd").params["kd_weight"]}
    path.write_text(json.dumps(rec))
    assert "differ" not in experiment.recorded_search(path, configs)[1]



def test_student_arch_applies_to_clonal_and_kd_only():
    configs = experiment.method_configs(["baseline", "asloss", "clonal", "kd"], TrainConfig(), "digits_cnn_small")
    assert {m: c.arch for m, c in configs.items()} == {"baseline": "digits_cnn", "asloss": "digits_cnn",
                                                       "clonal": "digits_cnn_small", "kd": "digits_cnn_small"}
    assert all(c.method == m for m, c in configs.items())
