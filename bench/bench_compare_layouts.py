"""Compare's first screen, today's layout against issue 20's, side by side in one run (headless
Chromium, CPU only), and a generated 1,000-class comparison.

"old": the new code with the panels open that the old page drew up front (per class, confusion
change and flips, separability, sample table: 6 plotly charts for two models); "new": the first
screen alone (headline, aligned views, confusion matrices: 4 charts). Rows: cold (fresh server,
empty engine cache), warm (second visit), warm reached from the sidebar (no page reload); and
the default view (no ``models=``) on a freshly started server with the cache ``asl-lens demo``
leaves (its first view computed by ``ui.compare.warm_first_visit``).

    .venv/bin/python bench/bench_compare_layouts.py [--runs 2] [--many 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_app import DRAWN_JS, open_and_time, report  # noqa: E402

from asl_core.testkit.browser import browser_page, streamlit_server, wait_idle  # noqa: E402

LAYOUTS = {"old (former first screen: + per class, flips, separability, samples)": ("&panels=per_class,flips,separability,samples", 6),
           "new (headline, views, confusion matrices)": ("", 4)}


def visit(folder: Path, path: str, charts: int, runs: int) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache, streamlit_server(folder, Path(cache), timeout=120) as url, \
                browser_page(width=1280) as page:
            res.setdefault("cold (new server, empty cache)", []).append(open_and_time(page, url + path, charts, 900_000))
            res.setdefault("warm (second visit)", []).append(open_and_time(page, url + path, charts))
            page.get_by_role("link", name="Home").first.click()
            page.get_by_text("Checkpoint library").wait_for(timeout=120_000)
            wait_idle(page)
            t0 = time.perf_counter()
            page.get_by_role("link", name="Compare").first.click()
            page.wait_for_function(DRAWN_JS, arg=charts, timeout=180_000, polling=50)
            res.setdefault("warm, from the sidebar (no page reload)", []).append(time.perf_counter() - t0)
    return res


def visit_as_demo_leaves_it(folder: Path, runs: int) -> dict[str, list[float]]:
    """A freshly started server on the cache ``asl-lens demo`` leaves: Compare's first view (its
    default models, 3 in the demo) computed into the disk cache by ``warm_first_visit``."""
    import os

    from ui.compare import warm_first_visit

    res: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["ASL_LENS_CACHE"] = cache
            try:
                cmp = warm_first_visit(folder)
            finally:
                del os.environ["ASL_LENS_CACHE"]
            charts = 2 * len(cmp.models)
            with streamlit_server(folder, Path(cache), timeout=120) as url, browser_page(width=1280) as page:
                res.setdefault("cold (new server, the cache asl-lens demo leaves)", []).append(
                    open_and_time(page, url + "/Compare", charts, 900_000))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--models", default="baseline,asloss")
    p.add_argument("--many", type=int, default=1000, help="classes of the generated library (0 skips it)")
    p.add_argument("--many-root", default="/tmp/asl-lens-many")
    args = p.parse_args()
    folder = ROOT / "checkpoints"
    results: dict[str, dict[str, list[float]]] = {}
    for name, (extra, charts) in LAYOUTS.items():
        print(f"demo, {name} ...", flush=True)
        results[f"demo, {name}"] = visit(folder, f"/Compare?models={args.models}{extra}", charts, args.runs)
    print("demo, default view, cache as asl-lens demo leaves it ...", flush=True)
    results["demo, default view (3 models)"] = visit_as_demo_leaves_it(folder, args.runs)
    if args.many:
        from asl_core.testkit.many import make_many_class_library

        root = Path(args.many_root) / str(args.many)
        make_many_class_library(root / "lib", root / "data", args.many)
        print(f"{args.many} classes, new layout ...", flush=True)
        results[f"{args.many} classes, new layout"] = visit(root / "lib", "/Compare", 4, args.runs)
    report(results, "bench_compare_layouts.json", width=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
