"""Renderers for big point clouds, measured side by side in headless Chromium (software WebGL).

    .venv/bin/python bench/bench_cloud.py [--sizes 100000,1000000] [--renderers scattergl,pydeck,cloud]

Two linked views of N synthetic points (10 Gaussian blobs), three ways:

- ``scattergl``: plotly's WebGL scatter, every point sent to the browser
  (``ui.views.plotly_scatter_row``, what the app draws below 50k points); the browser computes
  the lasso.
- ``pydeck``: deck.gl through ``st.pydeck_chart`` (ScatterplotLayer in an orthographic view, with
  ``on_select``); every point sent as JSON. Its selection is clicking objects: no lasso.
- ``cloud``: ``ui.cloud.cloud_row`` (what the app draws from 50k points): a density image per
  view drawn on the server, a 2,000-point hover sample, the lasso applied to all points on the
  server.

Per renderer and size: time from opening the page to both views drawn; the lasso gesture itself
and the time from mouse-up to the other view highlighted; the tab's JS heap (CDP
``Performance.getMetrics``) after drawing; bytes received over the websocket while drawing.
A step that takes longer than ``--step-timeout`` is reported as such. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from asl_core.testkit.browser import browser_page, lasso_all, streamlit_server  # noqa: E402

OUT = ROOT / "bench" / "out"

COMMON = '''
import numpy as np
import streamlit as st

from asl_core.testkit.clouds import synthetic_views

st.set_page_config(page_title="bench cloud", layout="wide")
N = int(st.query_params.get("points", 100000))
PREFIX = "bench"


@st.cache_resource
def synthetic(n: int, n_views: int = 2):
    return synthetic_views(n, n_views)


data = synthetic(N)
'''

PAGES = {
    "scattergl": COMMON + '''
from ui import views, selection
from ui import state as S

source = views.highlight_source(PREFIX)
ids = None if source is None else selection.chart_ids(S.scatter_key(PREFIX, source[1]))
st.markdown(f"### selected {len(ids) if ids else 0} of {N}")
views.plotly_scatter_row(data, ["view 0", "view 1"], [str(c) for c in range(10)], "true", ids or None, PREFIX,
                         source=None if source is None else source[1])
''',
    "pydeck": COMMON + '''
import pandas as pd
import pydeck as pdk
from plotly.colors import qualitative

palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in qualitative.Plotly])
st.markdown(f"### selected 0 of {N}")
cols = st.columns(2)
for i, (col, v) in enumerate(zip(cols, data)):
    rgb = palette[v["labels"] % len(palette)]
    df = pd.DataFrame({"x": v["coords"][:, 0], "y": v["coords"][:, 1], "r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]})
    layer = pdk.Layer("ScatterplotLayer", df, id=f"points{i}", get_position=["x", "y"], get_fill_color=["r", "g", "b"],
                      get_radius=0.05, radius_min_pixels=1, pickable=True)
    deck = pdk.Deck(layers=[layer], views=[pdk.View(type="OrthographicView", controller=True)],
                    initial_view_state=pdk.ViewState(target=[0, 0, 0], zoom=3), map_style=None)
    with col:
        st.pydeck_chart(deck, on_select="rerun", selection_mode="multi-object", key=f"deck{i}", height=460)
''',
    "cloud": COMMON + '''
from ui import cloud
from ui import state as S

source = st.session_state.get(S.highlight_source_key(PREFIX))
ids = None if source is None else cloud.cloud_ids(PREFIX, source[1], data[source[1]])
st.markdown(f"### selected {0 if ids is None else ids.size} of {N}")
cloud.cloud_row(data, ["view 0", "view 1"], [str(c) for c in range(10)], "true", ids if ids is not None and ids.size else None,
                PREFIX, source=None if source is None else source[1])
''',
}

DRAWN = {
    "scattergl": """() => { const c = [...document.querySelectorAll('.js-plotly-plot')];
        return c.length >= 2 && c.every(g => g._fullLayout && g.querySelector('.gl-canvas-context, canvas'))
               && !document.querySelector('[data-test-script-state="running"]'); }""",
    "pydeck": """() => document.querySelectorAll('[data-testid="stDeckGlJsonChart"] canvas').length >= 2
               && !document.querySelector('[data-test-script-state="running"]')""",
    "cloud": """() => { const c = [...document.querySelectorAll('.js-plotly-plot')];
        return c.length >= 2 && c.every(g => g.layout && g.layout.images && g.layout.images.length)
               && !document.querySelector('[data-test-script-state="running"]'); }""",
}
# a fingerprint of view 1 that changes when it is redrawn highlighted
VIEW1 = {
    "scattergl": """() => { const g = document.querySelectorAll('.js-plotly-plot')[1]; if (!g || !g.data) return '';
        return g.data.map(t => (t.marker && Array.isArray(t.marker.opacity)) ? 'h' + t.marker.opacity.length : 'p').join(); }""",
    "cloud": """() => { const g = document.querySelectorAll('.js-plotly-plot')[1];
        return g && g.layout && g.layout.images && g.layout.images.length ? g.layout.images[0].source.slice(-200) : ''; }""",
}


def heap_mb(page) -> float:
    client = page.context.new_cdp_session(page)
    client.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in client.send("Performance.getMetrics")["metrics"]}
    return metrics.get("JSHeapUsedSize", float("nan")) / 2**20


def measure(renderer: str, sizes: list[int], step_ms: int) -> list[dict]:
    OUT.mkdir(parents=True, exist_ok=True)
    script = OUT / f"bench_cloud_{renderer}.py"
    script.write_text(PAGES[renderer])
    rows = []
    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp), Path(tmp), script=script, timeout=180) as url:
        for n in sizes:
            row: dict = {"renderer": renderer, "points": n}
            with browser_page() as page:
                received: list[int] = []
                page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(len(f))))
                t0 = time.perf_counter()
                try:
                    page.goto(f"{url}/?points={n}", timeout=step_ms)
                    page.wait_for_function(DRAWN[renderer], timeout=step_ms, polling=100)
                    row["render_s"] = time.perf_counter() - t0
                except Exception:  # noqa: BLE001 - a timeout is a result here
                    row["render_s"] = f"> {step_ms / 1000:.0f} (timeout)"
                    rows.append(row)
                    print(row, flush=True)
                    continue
                page.wait_for_timeout(1000)
                row["ws_mb"] = sum(received) / 2**20
                row["heap_mb"] = heap_mb(page)
                page.screenshot(path=str(OUT / f"cloud_{renderer}_{n}.png"))
                if renderer in VIEW1:
                    before = page.evaluate(VIEW1[renderer])
                    t1 = time.perf_counter()
                    try:
                        lasso_all(page, 0, margin=0.3)
                        t2 = time.perf_counter()
                        row["gesture_s"] = t2 - t1
                        page.wait_for_function("() => /selected [1-9]/.test(document.querySelector('h3').innerText)",
                                               timeout=step_ms, polling=50)
                        page.wait_for_function(f"(b) => ({VIEW1[renderer]})() !== b", arg=before, timeout=step_ms,
                                               polling=50)
                        row["lasso_to_highlight_s"] = time.perf_counter() - t2
                        row["selected"] = page.locator("h3").first.inner_text()
                        row["heap_after_lasso_mb"] = heap_mb(page)
                    except Exception:  # noqa: BLE001
                        row["lasso_to_highlight_s"] = f"> {step_ms / 1000:.0f} (timeout)"
                else:
                    row["lasso_to_highlight_s"] = "n/a (selection by clicking objects, no lasso)"
            rows.append(row)
            print(row, flush=True)
    return rows


def fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v if v is not None else "-")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--renderers", default="cloud,pydeck,scattergl")
    p.add_argument("--step-timeout", type=float, default=240.0, help="seconds per step before it counts as a timeout")
    p.add_argument("--quick", action="store_true", help="10k points only")
    args = p.parse_args()
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    rows = []
    for renderer in args.renderers.split(","):
        rows += measure(renderer, sizes, int(args.step_timeout * 1000))
    print(f"\n{'renderer':<10} {'points':>9} {'render s':>10} {'gesture s':>10} {'mouse-up->highlight s':>22} "
          f"{'heap MB':>8} {'ws MB':>8}")
    for r in rows:
        print(f"{r['renderer']:<10} {r['points']:>9,} {fmt(r.get('render_s')):>10} {fmt(r.get('gesture_s')):>10} "
              f"{fmt(r.get('lasso_to_highlight_s')):>22} {fmt(r.get('heap_mb')):>8} {fmt(r.get('ws_mb')):>8}")
    (OUT / "bench_cloud.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
