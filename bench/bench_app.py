"""Browser benchmark of the app (headless Chromium through Playwright, CPU only).

1. Compare with two demo models on every test sample: time from opening the page to all
   plots drawn, cold (fresh server, empty engine cache), cold cache on a warm server, warm
   (second visit: in-memory results) and warm disk (restarted server, engine cache on disk).
2. The Compare scatter row with 100k synthetic points per view (two views, WebGL): time to
   render, and time for a lasso selection in one view to come back highlighted in the other.
3. Every page in a new browser session on a warm server (its caches filled by a first visit):
   time from opening the page to the script finished (issue 12: < 2 s).
4. The server-drawn density views (``ui.cloud``) at 100k and 1M points per view: render, lasso
   gesture, mouse-up to highlight, tab heap, websocket bytes (bench/bench_cloud.py compares the
   renderers; this prints the chosen one beside the rest of the app's rows).

    .venv/bin/python bench/bench_app.py [--points 100000] [--models baseline,asloss]

Uses the checkpoints in $ASL_LENS_CHECKPOINTS or checkpoints/ (trains the demo ones that are
missing). Targets: < 5 s cold, < 1 s warm, 100k points render and stay interactive.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from asl_core.testkit.browser import browser_page, lasso_all, streamlit_server

OUT = ROOT / "bench" / "out"
DRAWN_JS = """(n) => {
  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  return charts.length >= n && charts.every(c => c._fullLayout && c.querySelector('.main-svg'))
         && !document.querySelector('[data-testid="stStatusWidget"]');
}"""

# highlighted points in view 1: markers with the engine's bright opacity (0.95); -1 before any highlight
BRIGHT_JS = """() => { const g = document.querySelectorAll('.js-plotly-plot')[1];
  if (!g || !g.data) return -2;
  let n = 0, any = false;
  for (const t of g.data) { const o = t.marker && t.marker.opacity;
    if (Array.isArray(o)) { any = true; for (const v of o) if (v > 0.9) n++; } }
  return any ? n : -1; }"""

SCATTER_PAGE = '''"""Bench-only page: the Compare scatter row with synthetic points (not part of the app)."""
import numpy as np
import streamlit as st

from ui import views
from ui import state as S

st.set_page_config(page_title="bench scatter", layout="wide")
N = int(st.query_params.get("points", 100000))
PREFIX = "bench"


@st.cache_resource
def synthetic(n: int, views_: int = 2):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    centres = rng.normal(0, 6, (10, 2))
    out = []
    for v in range(views_):
        coords = (centres[labels] + rng.normal(0, 1.5, (n, 2))).astype(np.float32)
        preds = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 10, n))
        out.append({"coords": coords, "labels": labels, "preds": preds, "confidence": rng.random(n),
                    "index": np.arange(n)})
    return out


data = synthetic(N)
source = views.highlight_source(PREFIX)
ids = None
if source is not None:
    ids = S and __import__("ui.selection", fromlist=["chart_ids"]).chart_ids(S.scatter_key(PREFIX, source[1])) or None
st.markdown(f"### selected {len(ids) if ids else 0} of {N}")
views.scatter_row(data, [f"view {i}" for i in range(len(data))], [str(c) for c in range(10)], "true", ids, PREFIX,
                  source=None if source is None else source[1])
'''


def open_and_time(page, url: str, charts: int, timeout_ms: int = 180_000) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(DRAWN_JS, arg=charts, timeout=timeout_ms, polling=50)
    return time.perf_counter() - t0


def bench_compare(folder: Path, models: str, runs: int) -> dict[str, list[float]]:
    n_models = len(models.split(","))
    charts = 2 * n_models + (n_models - 1)  # scatters, confusions, deltas
    url_path = f"/Compare?models={models}"
    res: dict[str, list[float]] = {"cold (new server, empty cache)": [], "cold cache (warm server)": [],
                                   "warm (second visit)": [], "warm disk (restarted server)": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            with streamlit_server(folder, Path(cache)) as url, browser_page() as page:
                res["cold (new server, empty cache)"].append(open_and_time(page, url + url_path, charts))
                res["warm (second visit)"].append(open_and_time(page, url + url_path, charts))
            with tempfile.TemporaryDirectory() as cache2:
                with streamlit_server(folder, Path(cache2)) as url, browser_page() as page:
                    page.goto(url)  # the home page: imports done, caches empty
                    page.get_by_text("Checkpoint library").wait_for(timeout=120_000)
                    res["cold cache (warm server)"].append(open_and_time(page, url + url_path, charts))
            with streamlit_server(folder, Path(cache)) as url, browser_page() as page:
                res["warm disk (restarted server)"].append(open_and_time(page, url + url_path, charts))
    return res


def bench_scatter(points: int, runs: int) -> dict[str, list[float]]:
    OUT.mkdir(parents=True, exist_ok=True)
    script = OUT / "bench_scatter_page.py"
    script.write_text(SCATTER_PAGE)
    res: dict[str, list[float]] = {f"render 2 x {points:,} points": [], "re-render (second visit)": []}
    sizes: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp), Path(tmp), script=script) as url, \
            browser_page() as page:
        for i in range(runs):
            t = open_and_time(page, f"{url}/?points={points}", 2)
            res[f"render 2 x {points:,} points" if i == 0 else "re-render (second visit)"].append(t)
            for label, margin in (("small", 0.44), ("large", 0.3)):
                page.wait_for_timeout(500)
                before = page.locator("h3").first.inner_text()
                bright_before = page.evaluate(BRIGHT_JS)
                t_gesture = time.perf_counter()
                lasso_all(page, 0, margin=margin)
                t0 = time.perf_counter()
                res.setdefault(f"lasso {label}: the drag gesture itself", []).append(t0 - t_gesture)
                page.wait_for_function("(b) => { const h = document.querySelector('h3'); return h && h.innerText !== b "
                                       "&& /selected [1-9]/.test(h.innerText); }", arg=before, timeout=180_000, polling=50)
                # view 1 redrawn with the highlight: its markers carry per-point opacities
                page.wait_for_function(f"(b) => ({BRIGHT_JS})() !== b", arg=bright_before, timeout=180_000, polling=50)
                elapsed = time.perf_counter() - t0
                n_sel = int(page.locator("h3").first.inner_text().split()[1])
                key = f"lasso {label}: mouse-up -> other view highlighted"
                res.setdefault(key, []).append(elapsed)
                sizes.setdefault(key, []).append(n_sel)
                page.screenshot(path=str(OUT / f"scatter_{points}_{i}_{label}.png"))
    for key, n in sizes.items():
        print(f"  {key}: {n} points selected")
    return res


PAGE_PATHS = ("/", "/Checkpoints", "/Explore", "/Compare")


def bench_pages(folder: Path, runs: int) -> dict[str, list[float]]:
    """Each page opened in a fresh browser session (a new Streamlit session) on a server whose
    caches a first visit filled."""
    from asl_core.testkit.browser import wait_idle

    res: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache, streamlit_server(folder, Path(cache)) as url:
        with browser_page() as page:  # fill the caches
            for path in PAGE_PATHS:
                page.goto(url + path)
                page.wait_for_selector('[data-testid="stMain"] h1, [data-testid="stMain"] h2', timeout=300_000)
                wait_idle(page, timeout=300_000)
        for _ in range(runs):
            for path in PAGE_PATHS:
                with browser_page() as page:
                    t0 = time.perf_counter()
                    page.goto(url + path)
                    page.wait_for_selector('[data-testid="stMain"] h1, [data-testid="stMain"] h2', timeout=300_000)
                    wait_idle(page, timeout=300_000)
                    res.setdefault(f"{path} (new session, warm cache)", []).append(time.perf_counter() - t0)
    return res


def bench_clouds(sizes: list[int]) -> dict[str, list[float]]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_cloud import measure

    res: dict[str, list[float]] = {}
    for row in measure("cloud", sizes, 300_000):
        n = f"{row['points']:,}"
        for key, label in (("render_s", "render"), ("gesture_s", "lasso gesture"),
                           ("lasso_to_highlight_s", "mouse-up -> other view highlighted")):
            if isinstance(row.get(key), float):
                res.setdefault(f"2 x {n}: {label}", []).append(row[key])
        print(f"  cloud {n}: tab heap {row.get('heap_mb', float('nan')):.1f} MB, websocket "
              f"{row.get('ws_mb', float('nan')):.2f} MB, {row.get('selected', '')}")
    return res


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="baseline,asloss")
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--skip-compare", action="store_true")
    p.add_argument("--skip-scatter", action="store_true")
    p.add_argument("--skip-pages", action="store_true")
    p.add_argument("--skip-cloud", action="store_true")
    p.add_argument("--cloud-sizes", default="100000,1000000")
    args = p.parse_args()
    folder = Path(os.environ.get("ASL_LENS_CHECKPOINTS", ROOT / "checkpoints"))
    missing = [m for m in args.models.split(",") if not (folder / f"{m}.safetensors").exists()]
    if missing:
        from asl_core.demo import ensure_demo_checkpoints

        ensure_demo_checkpoints(folder)
    results: dict[str, dict[str, list[float]]] = {}
    if not args.skip_compare:
        print(f"Compare ({args.models}, every test sample) ...", flush=True)
        results["compare"] = bench_compare(folder, args.models, args.runs)
    if not args.skip_scatter:
        print(f"Scatter row, {args.points:,} points per view ...", flush=True)
        results["scatter"] = bench_scatter(args.points, args.runs)
    if not args.skip_pages:
        print("Every page in a new session, warm cache ...", flush=True)
        results["page"] = bench_pages(folder, args.runs)
    if not args.skip_cloud:
        print("Density views (ui.cloud) ...", flush=True)
        results["cloud"] = bench_clouds([int(v) for v in args.cloud_sizes.split(",")])
    targets = {"cold (new server, empty cache)": "< 3 s (issue 12)", "cold cache (warm server)": "< 5 s",
               "warm (second visit)": "< 1 s", "warm disk (restarted server)": "< 5 s",
               **{f"{p} (new session, warm cache)": "< 2 s" for p in PAGE_PATHS}}
    print(f"\n{'measure':<40} {'median (all runs)':<40} target")
    for group, rows in results.items():
        for name, values in rows.items():
            print(f"{group + ': ' + name:<40} {fmt(values):<40} {targets.get(name, '< 1 s' if 'highlighted' in name else '')}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_app.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
