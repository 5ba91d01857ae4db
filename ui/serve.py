"""``python -m ui.serve run app.py [streamlit options]``: Streamlit's own command line, with the
app's heavy imports done in a background thread while the server starts.

Streamlit imports a page's modules only when the first browser session runs it, so the first
visitor after a start waited for torch, scikit-learn, plotly and the engine to import (about 7 s
on 2 cores; bench/bench_app.py, "cold (new server)"). Here they are imported as soon as the
process starts; a session that arrives earlier waits on Python's import lock for what it needs.
timm, which only the upload form needs, waits until a first page has been served
(:func:`start_later`): imported at the start it took the interpreter from the first visit (a
warm-cached Compare took 14 s instead of 10 s). With ``ASL_LENS_WARM_FIRST_VIEW=1`` (what
``asl-lens demo --serve`` sets) the same thread then computes Compare's first view into the disk
cache (``ui.compare.warm_first_visit``), a cache hit when nothing changed.
``asl-lens app``/``demo --serve`` and the browser tests start the server this way.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time

# what the pages import, heaviest first; the projection libraries load lazily (first UMAP/t-SNE)
PRELOAD = ("torch", "sklearn.metrics", "plotly.graph_objects", "pandas", "asl_core.engine.analysis",
           "asl_core.report.figures", "asl_core.report.tables", "ui.views", "ui.analysis", "ui.images", "ui.compare")
# imported in the background after the first page has been served (app.py calls start_later):
# only the upload form needs it (it lists timm's 1,300+ architectures), and its import takes
# seconds of the interpreter's lock; started with the server, it slowed the first visit to a
# warm-cached Compare from ~3 s to 14 s on 2 cores
LATER = ("timm",)
_later = {"pending": False}

_state: dict[str, object] = {"done": False, "seconds": None, "failed": []}


@contextlib.contextmanager
def before_the_runtime():
    """Importing the ui modules before Streamlit's runtime exists makes each ``st.cache_data``
    decorator log "No runtime found, using MemoryCacheStorageManager". It is harmless (the storage
    is looked up again on every call, when the runtime exists), so it is not shown."""
    import streamlit.runtime.caching.cache_data_api  # noqa: F401 - its logger's level is set when imported

    from asl_core.runtime import quiet_logger

    with quiet_logger("streamlit.runtime.caching.cache_data_api"):
        yield


def preload(modules: tuple[str, ...] = PRELOAD) -> dict[str, object]:
    """Import ``modules`` (a failure is recorded, not raised: the page reports it when it runs)."""
    with before_the_runtime():
        return _preload(modules)


def _preload(modules: tuple[str, ...]) -> dict[str, object]:
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
    if "plotly.graph_objects" in modules:
        try:
            _warm_plotly()
        except Exception as exc:  # noqa: BLE001 - only a head start
            _state["failed"].append(f"plotly warm-up: {exc}")
    _state.update(done=True, seconds=time.perf_counter() - t0)
    return _state


def start_later() -> bool:
    """Import :data:`LATER` in a background thread, once per server started by :func:`main`
    (``app.py`` calls it when a page run has finished). Returns whether it started it now."""
    if not _later.pop("pending", False):
        return False
    threading.Thread(target=preload, args=(LATER,), name="asl-lens-preload-later", daemon=True).start()
    return True


def _warm_plotly() -> None:
    """plotly builds each trace type's property validators the first time a figure uses it (0.5 s
    of the first Compare in a fresh server); the pages' trace types are built here instead."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=[0.0], y=[0.0], mode="markers", marker={"size": [6], "opacity": [0.8]}),
                     go.Scattergl(x=[0.0], y=[0.0], mode="markers"), go.Heatmap(z=[[0.0]], text=[["0"]]),
                     go.Bar(x=[0.0], y=["a"], orientation="h")])
    fig.update_layout(title="x", xaxis={"title": "x"}, shapes=[{"type": "rect", "x0": 0, "x1": 1, "y0": 0, "y1": 1}])
    fig.to_plotly_json()


def start_up() -> dict[str, object]:
    """The server's background start: :data:`PRELOAD`, then (``ASL_LENS_WARM_FIRST_VIEW=1``)
    Compare's first view into the disk cache."""
    preload()
    from asl_core.settings import get_settings

    try:
        settings = get_settings()
    except Exception as exc:  # noqa: BLE001 - a bad ASL_LENS_* value: every page names it
        _state["failed"].append(f"settings: {exc}")
        return _state
    if settings.warm_first_view:
        t0 = time.perf_counter()
        try:
            from ui.compare import warm_first_visit

            with before_the_runtime():
                warm_first_visit(settings.checkpoints_dir)
            _state["first_view_seconds"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - the page computes it when visited and shows any error
            _state["failed"].append(f"first view: {exc}")
    return _state


def main(argv: list[str] | None = None) -> int:
    """Streamlit's command line with ``argv`` (default ``sys.argv[1:]``); ``run`` starts the
    background imports (:func:`start_up`) first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        threading.Thread(target=start_up, name="asl-lens-preload", daemon=True).start()
        _later["pending"] = True
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *argv]
    return streamlit_main()


if __name__ == "__main__":
    sys.exit(main())
