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
