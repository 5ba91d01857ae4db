from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.app.library_fixture import make_library
from tests.browser.harness import CHROMIUM, ROOT

ARTIFACTS = ROOT / "tests" / "_artifacts"


def pytest_collection_modifyitems(config, items):
    if not os.path.exists(CHROMIUM):
        skip = pytest.mark.skip(reason=f"{CHROMIUM} not installed (apt-get install chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


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
