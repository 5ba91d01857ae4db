"""``python -m ui.serve run app.py [streamlit options]``: Streamlit's own command line,
with the app's heavy imports done in a background thread while the server starts.

Streamlit imports a page's modules only when the first browser session runs it, so the first
visitor after a start waited ~4 s for torch, scikit-learn, plotly and the engine to import
(bench/bench_app.py, "cold (new server)"). Here they are imported as soon as the process starts;
a session that arrives earlier simply waits on Python's import lock for the module it needs.
``asl-lens app``/``demo --serve`` and the browser tests start the server this way.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time

# what the pages import, heaviest first; the projection libraries load lazily (first UMAP/t-SNE)
PRELOAD = ("torch", "sklearn.metrics", "plotly.graph_objects", "pandas", "asl_core.engine.analysis",
           "asl_core.report.figures", "asl_core.report.tables", "ui.views", "ui.analysis", "ui.images",
           "timm")  # timm: the upload form lists its 1,300+ architectures (its import takes seconds)

_state: dict[str, object] = {"done": False, "seconds": None, "failed": []}


def preload(modules: tuple[str, ...] = PRELOAD) -> dict[str, object]:
    """Import ``modules`` (a failure is recorded, not raised: the page reports it when it runs)."""
    t0 = time.perf_counter()
    try:
        from asl_core.runtime import limit_threads

        limit_threads(role="app")
    except Exception as exc:  # noqa: BLE001 - a bad ASL_LENS_THREADS: the page names it
        _state["failed"].append(f"thread limit: {exc}")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the page that needs it will show the error
            _state["failed"].append(f"{name}: {exc}")
    _state.update(done=True, seconds=time.perf_counter() - t0)
    return _state


def main() -> int:
    threading.Thread(target=preload, name="asl-lens-preload", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    return streamlit_main()


if __name__ == "__main__":
    sys.exit(main())
