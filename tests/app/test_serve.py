from __future__ import annotations

import subprocess
import sys

from ui import serve


def test_preload_imports_and_records_failures():
    state = serve.preload(("json", "asl_core.no_such_module"))
    assert state["done"] and "json" in sys.modules
    assert any(f.startswith("asl_core.no_such_module") for f in state["failed"])


def test_serve_is_streamlits_command_line():
    """``python -m ui.serve`` hands its arguments to Streamlit's own command line."""
    out = subprocess.run([sys.executable, "-m", "ui.serve", "version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Streamlit" in out.stdout


def test_killing_asl_lens_app_stops_the_server(tmp_path):
    """Issue 20, defect 7: killing ``asl-lens app`` by its PID left its ``ui.serve`` child serving."""
    import os
    import signal
    import socket
    import time

    from asl_core.testkit.browser import free_port

    port = free_port()
    env = dict(os.environ, ASL_LENS_CHECKPOINTS=str(tmp_path / "lib"), ASL_LENS_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "asl_core.cli", "app", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def serving() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("localhost", port)) == 0

    try:
        deadline = time.monotonic() + 120
        while not serving():
            assert proc.poll() is None and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while serving() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not serving(), "the port is still served after asl-lens app was killed"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_start_up_imports_then_warms_the_first_view_and_timm_waits(monkeypatch, tmp_path):
    """``run`` starts the imports in the background; with ``ASL_LENS_WARM_FIRST_VIEW=1`` (the demo)
    the same thread computes Compare's first view; timm (the upload form's) waits for a first page."""
    import streamlit.web.cli as streamlit_cli

    import ui.compare

    started = []
    monkeypatch.setattr(serve, "_state", {"done": False, "seconds": None, "failed": []})
    monkeypatch.setattr(serve, "_later", {"pending": False})
    monkeypatch.setattr(serve, "LATER", ())
    monkeypatch.setattr(serve, "start_up", lambda: started.append("start_up"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(streamlit_cli, "main", lambda: 0)
    assert serve.main(["run", "app.py"]) == 0
    assert sys.argv == ["streamlit", "run", "app.py"]
    assert serve.start_later() is True and serve.start_later() is False
    monkeypatch.undo()

    warmed = []
    monkeypatch.setattr(serve, "_state", {"done": False, "seconds": None, "failed": []})
    monkeypatch.setattr(serve, "PRELOAD", ("json",))
    monkeypatch.setattr(ui.compare, "warm_first_visit", lambda folder: warmed.append(folder))
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(tmp_path))
    serve.start_up()
    assert warmed == []  # only when asked
    monkeypatch.setenv("ASL_LENS_WARM_FIRST_VIEW", "1")
    state = serve.start_up()
    assert warmed == [tmp_path] and state["done"] and not state["failed"]
