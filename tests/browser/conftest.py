from __future__ import annotations

import os
from pathlib import Path

import pytest

from asl_core.testkit.library import make_library
from asl_core.testkit.browser import CHROMIUM, ROOT

ARTIFACTS = ROOT / "tests" / "_artifacts"


@pytest.fixture(autouse=True)
def _chromium_present(request):
    """`make test` installs Debian's chromium first; without it the browser tests fail rather
    than skip, so a missing browser never passes for a working one (`make test-fast` leaves
    them out on purpose)."""
    if "browser" in request.keywords and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not installed: run `make browser` (apt-get install chromium)")


@pytest.fixture(scope="session")
def browser_library(tmp_path_factory) -> tuple[Path, Path]:
    """(library with baseline + clonal, a spare asloss checkpoint outside it to upload)."""
    folder = tmp_path_factory.mktemp("browser_lib")
    spare = tmp_path_factory.mktemp("spare")
    paths = make_library(folder)
    target = spare / "asloss.safetensors"
    paths["asloss"].rename(target)
    return folder, target


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
