"""`asl-lens demo` warms the projection code once per numba cache and versions (issue 20: every
start spent ~10 s loading code the server process loads again anyway)."""

from __future__ import annotations

from importlib.metadata import version

from asl_core.engine import projection


def test_warm_up_is_skipped_once_the_cache_is_filled(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(projection, "project", lambda *a, **k: calls.append(1))
    assert projection.warm_up() >= 0 and calls == [1]
    assert (tmp_path / f"warm-umap-{version('umap-learn')}-numba-{version('numba')}").exists()
    assert projection.warm_up() == 0.0 and calls == [1]
