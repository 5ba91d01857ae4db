"""The reliability suite's recorder: every hostile or broken input tried, how it ended,
and whether anything in the library or cache changed. At the end of the run the tally is
written to docs/RELIABILITY.md (the table is produced by the tests, never by hand)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import resource
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asl_core.data import get_spec
from asl_core.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "RELIABILITY.md"


@dataclass
class Tally:
    cases: dict = field(default_factory=lambda: defaultdict(lambda: {"tried": 0, "refused": 0, "crashes": 0, "lost": 0}))
    examples: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    fuzz: dict = field(default_factory=lambda: defaultdict(lambda: {"cases": 0, "refused": 0, "loaded": 0, "crashes": 0,
                                                                    "lost": 0}))

    def fuzz_add(self, target: str, outcome: str | None) -> None:
        """One generated case: ``refused`` (a UserError), ``loaded`` (it was valid), ``crash``;
        ``lost`` marks an earlier case as having changed the library (not a new case)."""
        row = self.fuzz[target]
        if outcome == "lost":
            row["lost"] += 1
            return
        if outcome is None:
            return
        row["cases"] += 1
        row["refused" if outcome == "refused" else "loaded" if outcome == "loaded" else "crashes"] += 1

    def add(self, category: str, outcome: str, lost: bool, message: str = "") -> None:
        row = self.cases[category]
        row["tried"] += 1
        row["refused"] += outcome == "refused"
        row["crashes"] += outcome == "crash"
        row["lost"] += bool(lost)
        if message and category not in self.examples:
            # tmp paths change every run; keep the table stable between runs
            self.examples[category] = re.sub(r"/tmp/\S*/", ".../", message.splitlines()[0])[:140]


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


def tree_digest(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders: the 'nothing was lost or changed' check."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")) if Path(folder).exists() else []:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def good_checkpoints(tmp_path_factory):
    """Two tiny trained checkpoints (baseline and asloss) to corrupt and to keep."""
    from asl_core.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("good")
    spec = get_spec("digits-hard", samples_per_class=10, imbalance=2.0, val_per_class=4, test_per_class=5)
    paths = {}
    for method in ("baseline", "asloss"):
        r = train(TrainConfig(method=method, epochs=1, batch_size=16), spec, progress=False, name=method)
        paths[method] = save_checkpoint(r.model, r.meta, folder / method)
    return paths


@pytest.fixture(scope="session")
def app_library(tmp_path_factory):
    """baseline, asloss and clonal (testkit's tiny library), shared by the app-level tests;
    tests that change a library copy it first."""
    from asl_core.testkit.library import make_library

    folder = tmp_path_factory.mktemp("applib")
    make_library(folder)
    return folder


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pytest_sessionfinish(session, exitstatus):
    if not (TALLY.cases or TALLY.fuzz or TALLY.facts):
        return
    total = {"tried": 0, "refused": 0, "crashes": 0, "lost": 0}
    lines = [
        "# Reliability",
        "",
        "Produced by the test run (`tests/reliability/`, written by its conftest at the end of",
        "`make test`); do not edit by hand. *Refused cleanly*: the library raised a `UserError`",
        "with a one-line reason (and the CLI exited 2 with one line, the app showed a message).",
        "*Crash*: any other exception. *Data lost*: any byte of the checkpoint library or cache",
        "changed by the attempt.",
        "",
        "| category | tried | refused cleanly (or, for names, made safe) | crashes | data lost | example message |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for cat in sorted(TALLY.cases):
        r = TALLY.cases[cat]
        for k in total:
            total[k] += r[k]
        ex = TALLY.examples.get(cat, "").replace("|", "\\|")
        lines.append(f"| {cat} | {r['tried']} | {r['refused']} | {r['crashes']} | {r['lost']} | {ex} |")
    lines.append(f"| **all** | **{total['tried']}** | **{total['refused']}** | **{total['crashes']}** | **{total['lost']}** | |")
    if TALLY.fuzz:
        lines += ["", "## Generated inputs (Hypothesis, `tests/reliability/test_fuzz.py`)", "",
                  "Derandomised: the same cases every run (`ASL_LENS_FUZZ_SCALE=10` runs ten times as many). "
                  "*Refused*: a `UserError` with a message; *loaded*: the generated input was valid; *crash*: anything "
                  "else. Every failure the fuzzer found is fixed and kept as a fixed `@example`.", "",
                  "| parser | generated cases | refused cleanly | loaded (valid) | crashes | data lost |",
                  "|---|---:|---:|---:|---:|---:|"]
        ftotal = {"cases": 0, "refused": 0, "loaded": 0, "crashes": 0, "lost": 0}
        for target, r in TALLY.fuzz.items():
            for k in ftotal:
                ftotal[k] += r[k]
            lines.append(f"| {target} | {r['cases']} | {r['refused']} | {r['loaded']} | {r['crashes']} | {r['lost']} |")
        lines.append(f"| **all** | **{ftotal['cases']}** | **{ftotal['refused']}** | **{ftotal['loaded']}** | "
                     f"**{ftotal['crashes']}** | **{ftotal['lost']}** |")
        if "fuzz regressions" in TALLY.facts:
            lines += ["", TALLY.facts.pop("fuzz regressions")]
    lines += ["", "## Interrupted work, concurrency and resources", "", "| check | result |", "|---|---|"]
    for k, v in TALLY.facts.items():
        lines.append(f"| {k} | {v} |")
    lines.append(f"| peak RSS of the test process | {_peak_rss_mib():.0f} MiB |")
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.", ""]
    # only a whole, passing run of the suite is the committed report; a partial run (one file, -k)
    # goes beside the artifacts so that it cannot overwrite it with a fraction of the figures
    here = Path(__file__).parent
    ran = {Path(str(item.fspath)).name for item in session.items if Path(str(item.fspath)).parent == here}
    whole = ran == {p.name for p in here.glob("test_*.py")} and not session.config.option.keyword and exitstatus == 0
    target = REPORT if whole else ROOT / "tests" / "_artifacts" / "RELIABILITY.partial.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines))
    (ROOT / "tests" / "_artifacts").mkdir(parents=True, exist_ok=True)
    (ROOT / "tests" / "_artifacts" / "reliability.json").write_text(
        json.dumps({"cases": TALLY.cases, "facts": TALLY.facts}, indent=2, default=str))
