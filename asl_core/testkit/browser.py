"""Start the app in a subprocess on a free localhost port and drive it with headless Chromium.

Used by the browser tests and by bench/bench_app.py. The server is always killed (its whole
process group) when the context exits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (app.py)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# WebGL (Scattergl) without a GPU: SwiftShader's software rasteriser.
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_process(checkpoints: Path, cache: Path, script: str | Path = "app.py", env: dict | None = None,
                      timeout: float = 120.0, log: Path | None = None,
                      command: list[str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yields ``(base URL, process)`` of a running ``streamlit run script``, started like the
    product starts it (``python -m ui.serve``: imports preloaded; ``command``
    replaces that when a test wraps the server, e.g. to inject a fault)."""
    port = free_port()
    full_env = dict(os.environ, ASL_LENS_CHECKPOINTS=str(checkpoints), ASL_LENS_CACHE=str(cache), **(env or {}))
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*(command or [sys.executable, "-m", "ui.serve"]), "run", str(script), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start in time")
            time.sleep(0.3)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if log:
            out.close()


@contextlib.contextmanager
def streamlit_server(checkpoints: Path, cache: Path, script: str | Path = "app.py", env: dict | None = None,
                     timeout: float = 120.0, log: Path | None = None) -> Iterator[str]:
    """Yields the base URL of a running ``streamlit run script``."""
    with streamlit_process(checkpoints, cache, script, env, timeout, log) as (url, _):
        yield url


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1000, webgl: bool = True):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + (WEBGL_ARGS if webgl else []))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run: the app's root says ``data-test-script-state="running"``
    while a script runs (the status widget that used to say so is not drawn with ``toolbarMode = "minimal"``,
    so waiting for it to vanish returned at once)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-test-script-state="running"]', state="detached", timeout=timeout)


def open_options(page, label: str) -> None:
    """Open the list of the Streamlit selectbox labelled ``label`` (a react-aria combobox)."""
    box = page.get_by_role("combobox", name=label)
    box.scroll_into_view_if_needed()
    box.click()
    try:
        page.get_by_role("option").first.wait_for(timeout=5_000)
    except Exception:  # the click only focused it
        box.press("ArrowDown")
        page.get_by_role("option").first.wait_for(timeout=10_000)


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    open_options(page, label)
    page.get_by_role("option", name=option, exact=True).click()


def full_screenshot(page, path, width: int = 1600) -> None:
    """Streamlit scrolls inside its main container, so grow the viewport to the content first."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)")
    old = page.viewport_size
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 12000)})
    page.wait_for_timeout(700)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(old)


def plot_area(page, chart_index: int):
    """Bounding box of the drag layer (the plotting area) of the n-th plotly chart on the page."""
    charts = page.locator(".js-plotly-plot")
    chart = charts.nth(chart_index)
    chart.scroll_into_view_if_needed()
    return chart.locator(".nsewdrag").first.bounding_box()


def click_cell(page, chart_index: int, row: int, col: int, n: int) -> None:
    """Click cell (row, col) of an n x n heatmap drawn with the first row at the top."""
    box = plot_area(page, chart_index)
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / n, box["y"] + (row + 0.5) * box["height"] / n)


def lasso_all(page, chart_index: int, margin: float = 0.02) -> None:
    """Draw a lasso around the whole plotting area of the n-th plotly chart."""
    box = plot_area(page, chart_index)
    x0, y0 = box["x"] + margin * box["width"], box["y"] + margin * box["height"]
    x1, y1 = box["x"] + (1 - margin) * box["width"], box["y"] + (1 - margin) * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def heading_texts(page) -> list[str]:
    return page.locator("h1, h2, h3").all_inner_texts()
