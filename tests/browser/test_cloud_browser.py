"""A million points per view in headless Chromium: two linked density views draw, a lasso in
one selects among all points on the server, and the other view comes back highlighted. The
websocket carries images, not points. Screenshots: tests/_artifacts/cloud_*.png."""

from __future__ import annotations

import re

import pytest

from asl_core.testkit.browser import browser_page, lasso_all, streamlit_server

pytestmark = pytest.mark.browser
N = 1_000_000
TIMEOUT_MS = 240_000  # each step; the machine may be shared
IMAGE_JS = """(i) => { const g = document.querySelectorAll('.js-plotly-plot')[i];
  return g && g.layout && g.layout.images && g.layout.images.length ? g.layout.images[0].source : ''; }"""


def test_million_points_draw_lasso_highlight(artifacts, tmp_path):
    received = []
    with streamlit_server(tmp_path, tmp_path / "cache", script="tests/browser/cloud_page.py",
                          log=artifacts / "cloud_server.log", timeout=120) as url, browser_page() as page:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(len(f))))
        page.goto(f"{url}/?points={N}")
        page.wait_for_function(f"() => ({IMAGE_JS})(1).length > 0", timeout=TIMEOUT_MS, polling=200)
        assert page.locator("h3").first.inner_text() == f"selected 0 of {N}"
        captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
        assert len(captions) == 2 and all("all 1,000,000 points drawn" in c and "sample of 2,000" in c for c in captions)
        page.screenshot(path=str(artifacts / "cloud_1m_drawn.png"))
        # every point went into an image: what came over the websocket is far below 16 bytes x 2 x 1M
        assert sum(received) < 4_000_000, sum(received)

        before = page.evaluate(IMAGE_JS, 1)
        lasso_all(page, 0, margin=0.3)
        page.wait_for_function("() => /selected [1-9]/.test(document.querySelector('h3').innerText)",
                               timeout=TIMEOUT_MS, polling=100)
        page.wait_for_function(f"(b) => ({IMAGE_JS})(1) !== b", arg=before, timeout=TIMEOUT_MS, polling=100)
        selected = int(re.search(r"selected (\d+)", page.locator("h3").first.inner_text()).group(1))
        assert 0 < selected < N
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts / "cloud_1m_highlighted.png"))
