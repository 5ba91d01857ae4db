"""bench/gpu_check.sh and bench/gpu_check.py on a machine without a GPU: a clear message and exit 2,
before installing anything and without writing a report."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_the_shell_script_stops_cleanly_without_a_gpu(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "VENV": str(tmp_path / "venv")})
    assert proc.returncode == 2
    assert "no NVIDIA GPU here" in proc.stderr and "make test" in proc.stderr
    assert not (tmp_path / "venv").exists(), "nothing is installed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_python_check_stops_cleanly_without_a_gpu(tmp_path):
    report = tmp_path / "GPU_CHECK.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--report", str(report)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "no CUDA GPU visible to torch" in proc.stderr
    assert not report.exists()
