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
