"""Browser benchmark of the app (headless Chromium through Playwright, CPU only), every
browser row of issue 12's table in one run:

1. Compare with two demo models on every test sample: time from opening the page to all
   plots drawn, cold (fresh server, empty engine cache), cold cache on a warm server, warm
   (second visit: in-memory results) and warm disk (restarted server, engine cache on disk).
2. Every page as a new session on a warm server (its caches filled by a first visit): in a new
   tab of a browser that has seen the app (its scripts cached, like any returning user), and
   in a freshly started browser with nothing cached. Time from opening the page to the script
   finished (target < 2 s). Then the same new-tab visit of the home page while another session
   computes a cold t-SNE Compare of three models: does one session block another?
3. The scatter row at 100k and 1M points per view, as the app draws it there (the server-drawn
   density views of ``ui.cloud``), beside plotly's WebGL scatter at 100k (what it drew before):
   render, the lasso gesture, mouse-up to the other view highlighted, tab heap, websocket bytes
   (bench/bench_cloud.py compares the renderers in full).

    .venv/bin/python bench/bench_app.py [--runs 2] [--models baseline,asloss]

The projection rows of the table (first UMAP/t-SNE after a start, 10k and 100k against
umap-learn) are bench/bench_engine.py's. Uses the checkpoints in $ASL_LENS_CHECKPOINTS or
checkpoints/ (trains the demo ones that are missing).
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

from asl_core.testkit.browser import browser_page, streamlit_server, wait_idle

OUT = ROOT / "bench" / "out"
DRAWN_JS = """(n) => {
  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  return charts.length >= n && charts.every(c => c._fullLayout && c.querySelector('.main-svg'))
         && !document.querySelector('[data-test-script-state="running"]');
}"""

# highlighted points in view 1: markers with the engine's bright opacity (0.95); -1 before any highlight
BRIGHT_JS = """() => { const g = document.querySelectorAll('.js-plotly-plot')[1];
  if (!g || !g.data) return -2;
  let n = 0, any = false;
  for (const t of g.data) { const o = t.marker && t.marker.opacity;
    if (Array.isArray(o)) { any = true; for (const v of o) if (v > 0.9) n++; } }
  return any ? n : -1; }"""

def open_and_time(page, url: str, charts: int, timeout_ms: int = 180_000) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(DRAWN_JS, arg=charts, timeout=timeout_ms, polling=50)
    return time.perf_counter() - t0


def bench_compare(folder: Path, models: str, runs: int) -> dict[str, list[float]]:
    n_models = len(models.split(","))
    charts = 2 * n_models  # the first screen: scatters, confusion matrices (panels open on request, issue 20)
    url_path = f"/Compare?models={models}"
    res: dict[str, list[float]] = {"cold (new server, empty cache)": [], "cold cache (warm server)": [],
                                   "warm (second visit)": [], "warm disk (restarted server)": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            with streamlit_server(folder, Path(cache)) as url, browser_page() as page:
                res["cold (new server, empty cache)"].append(open_and_time(page, url + url_path, charts))
                res["warm (second visit)"].append(open_and_time(page, url + url_path, charts))
                # the way a user comes back: Home, then Compare from the sidebar (no page reload)
                page.get_by_role("link", name="Home").first.click()
                page.get_by_text("Checkpoint library").wait_for(timeout=120_000)
                wait_idle(page)
                t0 = time.perf_counter()
                page.get_by_role("link", name="Compare").first.click()
                page.wait_for_function(DRAWN_JS, arg=charts, timeout=180_000, polling=50)
                res.setdefault("warm, from the sidebar (no page reload)", []).append(time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as cache2:
                with streamlit_server(folder, Path(cache2)) as url, browser_page() as page:
                    page.goto(url)  # the home page: imports done, caches empty
                    page.get_by_text("Checkpoint library").wait_for(timeout=120_000)
                    res["cold cache (warm server)"].append(open_and_time(page, url + url_path, charts))
            with streamlit_server(folder, Path(cache)) as url, browser_page() as page:
                res["warm disk (restarted server)"].append(open_and_time(page, url + url_path, charts))
    return res


PAGE_PATHS = ("/", "/Checkpoints", "/Explore", "/Compare")


def _open_page(page, url: str) -> float:
    """Open ``url`` and wait for the page's title and the end of its script run."""

    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('[data-testid="stMain"] h1, [data-testid="stMain"] h2', timeout=300_000)
    wait_idle(page, timeout=300_000)
    return time.perf_counter() - t0


def bench_pages(folder: Path, runs: int) -> dict[str, list[float]]:
    """Each page as a new Streamlit session on a server whose caches a first visit filled: a new
    tab (the browser has the app's scripts cached) and a new browser (nothing cached). Then one
    session's page while another computes a cold t-SNE Compare of three models."""

    res: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache, streamlit_server(folder, Path(cache)) as url:
        with browser_page() as first:
            context = first.context.browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()  # fill the caches (server and browser), and stays open
            for path in PAGE_PATHS:
                _open_page(page, url + path)
            for _ in range(runs):
                for path in PAGE_PATHS:
                    tab = context.new_page()
                    res.setdefault(f"{path} (new tab, warm cache)", []).append(_open_page(tab, url + path))
                    tab.close()
            # one session busy with a cold projection, another opening the home page
            busy_url = f"{url}/Compare?models=baseline,asloss,clonal&proj=tsne&seed=7"
            for i in range(runs):
                tab = context.new_page()
                alone = _open_page(tab, url + "/")
                tab.close()
                worker = context.new_page()
                worker.goto(f"{busy_url}{i}")
                worker.wait_for_selector('[data-testid="stMain"] h1', timeout=300_000)
                worker.wait_for_timeout(300)  # the busy session is computing now
                tab = context.new_page()
                busy = _open_page(tab, url + "/")
                still_busy = worker.evaluate("() => !!document.querySelector('[data-test-script-state=\"running\"]')")
                tab.close()
                worker.wait_for_selector('[data-test-script-state="running"]', state="detached", timeout=300_000)
                worker.close()
                res.setdefault("/ (new tab) alone", []).append(alone)
                res.setdefault("/ (new tab) while another session projects", []).append(busy)
                if not still_busy:
                    print("  note: the busy session had finished before the home page was drawn", flush=True)
        for _ in range(runs):
            for path in PAGE_PATHS:
                with browser_page() as fresh:
                    res.setdefault(f"{path} (new browser, nothing cached)", []).append(_open_page(fresh, url + path))
    return res


def bench_clouds(sizes: list[int], scattergl_sizes: list[int]) -> dict[str, list[float]]:
    from bench_cloud import measure  # a sibling script: bench/ is sys.path[0] when this one runs

    res: dict[str, list[float]] = {}
    rows = measure("cloud", sizes, 300_000) + (measure("scattergl", scattergl_sizes, 300_000) if scattergl_sizes else [])
    for row in rows:
        name = f"{'density view' if row['renderer'] == 'cloud' else 'plotly scattergl (before)'} 2 x {row['points']:,}"
        for key, label in (("render_s", "render"), ("gesture_s", "lasso gesture"),
                           ("lasso_to_highlight_s", "mouse-up -> other view highlighted")):
            value = row.get(key)
            res.setdefault(f"{name}: {label}", []).append(value if isinstance(value, float) else float("nan"))
        print(f"  {name}: tab heap {row.get('heap_mb', float('nan')):.1f} MB, websocket "
              f"{row.get('ws_mb', float('nan')):.2f} MB, {row.get('selected', '')}", flush=True)
    return res


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="baseline,asloss")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--skip-compare", action="store_true")
    p.add_argument("--skip-pages", action="store_true")
    p.add_argument("--skip-cloud", action="store_true")
    p.add_argument("--cloud-sizes", default="100000,1000000")
    p.add_argument("--scattergl-sizes", default="100000", help="plotly's WebGL scatter, for comparison ('' skips it)")
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
    if not args.skip_pages:
        print("Every page as a new session, warm cache ...", flush=True)
        results["page"] = bench_pages(folder, args.runs)
    if not args.skip_cloud:
        print("Scatter rows of 100k-1M points ...", flush=True)
        ints = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
        results["scatter"] = bench_clouds(ints(args.cloud_sizes), ints(args.scattergl_sizes))
    targets = {"cold (new server, empty cache)": "< 3 s", "cold cache (warm server)": "< 5 s",
               "warm (second visit)": "< 1 s", "warm, from the sidebar (no page reload)": "< 1 s", "warm disk (restarted server)": "< 5 s",
               **{f"{p} (new tab, warm cache)": "< 2 s" for p in PAGE_PATHS},
               **{f"{p} (new browser, nothing cached)": "< 2 s" for p in PAGE_PATHS}}
    report(results, "bench_app.json", lambda name: targets.get(name, "< 1 s" if "highlighted" in name else ""))
    return 0


def report(results: dict[str, dict[str, list[float]]], file_name: str, target=lambda name: "", width: int = 72) -> None:
    """Print ``group: measure  median (all runs)  target`` per row and write the runs to ``bench/out``."""
    print(f"\n{'measure':<{width}} {'median (all runs)':<36} target")
    for group, rows in results.items():
        for name, values in rows.items():
            print(f"{group + ': ' + name:<{width}} {fmt(values):<36} {target(name)}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / file_name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
