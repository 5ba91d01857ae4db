"""Bounded storage and read-only mode: the cache's cap and LRU order, the library's quota,
the read-only refusal, and the settings that drive them."""

from __future__ import annotations

import fcntl
import os
import time

import numpy as np
import pytest

from asl_core import library
from asl_core.engine.cache import DiskCache
from asl_core.errors import ReadOnlyError, SettingsError, StorageError
from asl_core.settings import Settings


def _arrays(i: int, n: int = 2000) -> dict[str, np.ndarray]:
    return {"x": np.full(n, i, dtype=np.float64)}  # ~16 KB each


def _age(cache: DiskCache, kind: str, key: str, seconds: float) -> None:
    json_path = cache._paths(kind, key)[1]
    t = time.time() - seconds
    os.utime(json_path, (t, t))


def test_settings_parse_the_storage_fields(tmp_path):
    s = Settings.from_env({"ASL_LENS_CACHE_MAX_MB": "64", "ASL_LENS_LIBRARY_QUOTA_MB": "0.5", "ASL_LENS_READ_ONLY": "yes"})
    assert s.cache_max_bytes == 64 * 2**20 and s.library_quota_bytes == 2**19 and s.read_only
    d = Settings.from_env({})
    assert not d.read_only and d.cache_max_mb > 100 and d.library_quota_mb > 100
    for name, bad in [("ASL_LENS_READ_ONLY", "maybe"), ("ASL_LENS_CACHE_MAX_MB", "-1"), ("ASL_LENS_LIBRARY_QUOTA_MB", "x")]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})


def test_cache_evicts_least_recently_used_first(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=100_000)
    for i in range(4):
        cache.put("features", f"{i:064d}", _arrays(i), {"i": i})
        _age(cache, "features", f"{i:064d}", 100 - i)  # 0 is the oldest
    assert cache.get("features", f"{0:064d}") is not None  # reading 0 makes 1 the least recently used
    for i in range(4, 8):
        cache.put("features", f"{i:064d}", _arrays(i), {"i": i})
    usage = cache.usage()
    assert usage.bytes <= 100_000 and cache.evictions > 0
    assert cache.get("features", f"{1:064d}") is None
    assert cache.get("features", f"{0:064d}") is not None
    got = cache.get("features", f"{7:064d}")
    assert got is not None and np.array_equal(got[0]["x"], _arrays(7)["x"]) and got[1] == {"i": 7}


def test_an_entry_being_read_is_never_evicted(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=60_000)
    key = "a" * 64
    cache.put("features", key, _arrays(1), {"i": 1})
    _age(cache, "features", key, 1000)  # the oldest: first in line for eviction
    with open(cache._paths("features", key)[1], "rb") as reader:
        fcntl.flock(reader.fileno(), fcntl.LOCK_SH)  # what get() holds while it reads
        for i in range(2, 12):
            cache.put("features", f"{i:064d}", _arrays(i), {"i": i})
    assert cache.get("features", key) is not None
    assert cache.evictions >= 5


def test_an_entry_larger_than_the_cache_is_not_stored(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=10_000)
    cache.put("features", "b" * 64, _arrays(1), {})
    assert cache.get("features", "b" * 64) is None and cache.usage().entries == 0


def test_stale_temporary_files_count_and_are_cleared(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=50_000)
    shard = tmp_path / "features" / "ab"
    shard.mkdir(parents=True)
    junk = shard / ".abc.npz.x1.tmp"
    junk.write_bytes(b"\0" * 40_000)
    old = time.time() - 7200
    os.utime(junk, (old, old))
    assert cache.usage().bytes >= 40_000
    cache.put("features", "c" * 64, _arrays(3), {})
    assert not junk.exists() and cache.get("features", "c" * 64) is not None


def test_library_quota_refuses_and_changes_nothing(tmp_path, monkeypatch, ckpt_paths):
    lib = tmp_path / "lib"
    data = ckpt_paths[0].read_bytes()
    library.import_checkpoint(data, "first.safetensors", lib)
    monkeypatch.setenv("ASL_LENS_LIBRARY_QUOTA_MB", str(1.5 * len(data) / 2**20))
    before = sorted(p.name for p in lib.iterdir())
    with pytest.raises(StorageError, match="quota"):
        library.import_checkpoint(data, "second.safetensors", lib, allow_duplicate=True)  # the quota is under test
    assert sorted(p.name for p in lib.iterdir()) == before
    usage = library.library_usage(lib)
    assert usage.checkpoints == 1 and usage.bytes == (lib / "first.safetensors").stat().st_size
    # replacing a file does not count it twice
    library.import_checkpoint(data, "first.safetensors", lib, overwrite=True, allow_duplicate=True)


def test_read_only_refuses_every_change(tmp_path, monkeypatch, ckpt_paths, capsys):
    lib = tmp_path / "lib"
    good_checkpoint = ckpt_paths[0]
    library.import_checkpoint(good_checkpoint.read_bytes(), "kept.safetensors", lib)
    monkeypatch.setenv("ASL_LENS_READ_ONLY", "1")
    with pytest.raises(ReadOnlyError, match="read-only"):
        library.import_checkpoint(good_checkpoint.read_bytes(), "new.safetensors", lib)
    with pytest.raises(ReadOnlyError):
        library.delete_checkpoint("kept", lib)
    assert library.main(["--folder", str(lib), "delete", "kept"]) == 2
    assert library.main(["--folder", str(lib), "import", str(good_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.count("read-only") == 2 and len(err.strip().splitlines()) == 2
    assert library.main(["--folder", str(lib), "list"]) == 0  # reading still works
    assert [p.name for p in lib.iterdir()] == ["kept.safetensors"]
