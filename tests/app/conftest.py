from __future__ import annotations

import pytest

from asl_core.testkit.library import make_library


@pytest.fixture(scope="session")
def library_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    make_library(folder)
    return folder


@pytest.fixture
def app_env(library_dir, tmp_path, monkeypatch):
    """Point the app at the tiny library and a fresh engine cache."""
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(library_dir))
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "cache"))
    return library_dir
