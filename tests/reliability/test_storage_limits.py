"""Bounded storage under load, read-only mode refusing every change, and a full disk.

- The cache is filled far past its cap by writer threads and a writer process while reader
  threads read: every read is the exact arrays that were written under that key, or a miss.
- With ``ASL_LENS_READ_ONLY=1`` every way to change the library (library functions, the CLI,
  the app's helpers, the page's widgets) is refused and nothing changes.
- A small tmpfs holds the library and the cache; filling it gives a clear refusal and loses
  nothing (skipped with the reason where the machine cannot mount one).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asl_core import library
from asl_core.engine.cache import DiskCache
from asl_core.errors import ReadOnlyError, StorageError

from .conftest import tree_digest

ROOT = Path(__file__).resolve().parents[2]
CAP = 400_000  # bytes: ~20 entries of the sizes below


def expected_arrays(key: str) -> dict[str, np.ndarray]:
    """What the writer of ``key`` stores: derived from the key alone, so any reader can check it."""
    seed = int(key[:8], 16)
    n = 1000 + seed % 3000
    return {"x": np.random.default_rng(seed).normal(size=n).astype(np.float32), "seed": np.array([seed])}


def _key(i: int) -> str:
    return hashlib.sha256(f"entry {i}".encode()).hexdigest()


def _attempt(fn, refusal: type[Exception]) -> tuple[str, str]:
    """``("accepted" | "refused" | "crash", message)`` of one attempted change."""
    try:
        fn()
    except refusal as exc:
        return "refused", str(exc)
    except Exception as exc:  # noqa: BLE001 - counted
        return "crash", repr(exc)
    return "accepted", ""


def test_cache_filled_past_its_cap_reads_are_right_or_misses(tmp_path, tally):
    root = tmp_path / "cache"
    n_keys, rounds = 90, 3
    problems: list[str] = []
    counts = {"hits": 0, "misses": 0, "puts": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(offset: int) -> None:
        cache = DiskCache(root, max_bytes=CAP)
        for r in range(rounds):
            for i in range(offset, n_keys, 3):
                k = _key(i)
                cache.put("features", k, expected_arrays(k), {"key": k})
                with lock:
                    counts["puts"] += 1

    def reader(seed: int) -> None:
        cache = DiskCache(root, max_bytes=CAP)
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            k = _key(int(rng.integers(n_keys)))
            got = cache.get("features", k)
            time.sleep(0.002)  # a reader that never yields would starve the writers of the GIL
            with lock:
                if got is None:
                    counts["misses"] += 1
                    continue
                counts["hits"] += 1
                arrays, meta = got
                want = expected_arrays(k)
                if meta != {"key": k} or set(arrays) != set(want) or not all(np.array_equal(arrays[n], want[n]) for n in want):
                    problems.append(f"wrong result for {k[:12]}")

    # one more writer in its own process: eviction and locks work across processes too
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import hashlib, numpy as np
        from asl_core.engine.cache import DiskCache
        from tests.reliability.test_storage_limits import expected_arrays, _key
        cache = DiskCache({str(root)!r}, max_bytes={CAP})
        for r in range({rounds}):
            for i in range({n_keys}, {n_keys} + 40):
                k = _key(i)
                cache.put("projections", k, expected_arrays(k), {{"key": k}})
    """)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    threads = [threading.Thread(target=writer, args=(o,)) for o in range(3)]
    threads += [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join()
    assert child.wait(300) == 0
    stop.set()
    for t in threads[3:]:
        t.join()
    elapsed = time.perf_counter() - start
    final = DiskCache(root, max_bytes=CAP)
    final.enforce_cap()
    usage = final.usage()
    written = counts["puts"] + rounds * 40
    # every entry that remains reads back exactly
    for i in range(n_keys + 40):
        k = _key(i)
        kind = "features" if i < n_keys else "projections"
        got = final.get(kind, k)
        if got is not None and not np.array_equal(got[0]["x"], expected_arrays(k)["x"]):
            problems.append(f"entry {k[:12]} reads back wrong")
    assert not problems, problems[:5]
    assert usage.bytes <= CAP, usage
    assert counts["hits"] > 0 and final.hits > 0
    tally.facts["cache filled past its cap (3 writer threads + 1 writer process, 3 reader threads)"] = (
        f"{written} writes of {n_keys + 40} keys into a {CAP / 1000:.0f} kB cap; {counts['hits']} reads correct, "
        f"{counts['misses']} clean misses, 0 wrong; {usage.bytes / 1000:.0f} kB in {usage.entries} entries after; "
        f"{elapsed:.0f} s")


# --------------------------------------------------------------------------- read-only


@pytest.fixture
def ro_library(app_library):
    return app_library


def test_read_only_refuses_every_change(ro_library, tmp_path, monkeypatch, capsys, tally):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(ro_library))
    monkeypatch.setenv("ASL_LENS_CACHE", str(cache))
    monkeypatch.setenv("ASL_LENS_READ_ONLY", "1")
    good = ro_library / "baseline.safetensors"
    data = good.read_bytes()
    before = tree_digest(ro_library)
    problems = []
    # the CLI first: importing the app's helpers below makes Streamlit log to stderr
    for argv in (["import", str(good), "--name", "copy"], ["import", str(good), "--overwrite"], ["delete", "baseline"]):
        rc = library.main(["--folder", str(ro_library), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        ok = rc == 2 and len(err) == 1 and "read-only" in err[0]
        tally.add("read-only mode: attempted changes", "refused" if ok else "crash", tree_digest(ro_library) != before,
                  err[0] if err else "")
        if not ok:
            problems.append(f"CLI {argv}: rc={rc} {err}")
    from streamlit.testing.v1 import AppTest

    from ui import library as ui_library
    from ui import state as S

    attempts = {
        "library.import_checkpoint (bytes)": lambda: library.import_checkpoint(data, "new.safetensors", ro_library),
        "library.import_checkpoint (path, overwrite)": lambda: library.import_checkpoint(good, good.name, ro_library,
                                                                                         overwrite=True),
        "library.import_checkpoint (foreign weights)": lambda: library.import_checkpoint(
            data, "w.pt", ro_library, arch="digits_cnn", num_classes=10),
        "library.delete_checkpoint": lambda: library.delete_checkpoint("baseline", ro_library),
        "app helper import_upload": lambda: ui_library.import_upload(data, "up.safetensors", ro_library, max_bytes=2**30),
        "app helper delete_checkpoint": lambda: ui_library.delete_checkpoint(ro_library, "asloss.safetensors"),
    }
    for label, fn in attempts.items():
        outcome, message = _attempt(fn, ReadOnlyError)
        lost = tree_digest(ro_library) != before
        tally.add("read-only mode: attempted changes", outcome, lost, message)
        if outcome != "refused" or lost:
            problems.append(f"{label}: {outcome} {message}")
    # the page offers no upload and no delete, says why, and still lists and shows the models
    at = AppTest.from_file(str(ROOT / "app_pages" / "01_Checkpoints.py"), default_timeout=120)
    at.run()
    widgets = {getattr(w, "key", None) for w in at.button} | {getattr(w, "key", None) for w in at.get("file_uploader")}
    hidden = not (widgets & {S.CKPT_DELETE, S.CKPT_UPLOAD_SUBMIT, S.CKPT_UPLOAD}) and not at.get("file_uploader")
    says = any("read-only" in i.value for i in at.info)
    tally.add("read-only mode: attempted changes", "refused" if hidden and says and not at.exception else "crash",
              tree_digest(ro_library) != before, "Checkpoints page: no upload form, no delete button")
    if not (hidden and says) or at.exception:
        problems.append(f"page: widgets {widgets}, info {[i.value for i in at.info]}, exception {at.exception}")
    assert len(at.dataframe) == 1 and not at.exception
    assert not problems, "\n".join(problems)
    assert tree_digest(ro_library) == before


def test_checkpoints_page_shows_quota_and_cache_cap(ro_library, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(ro_library))
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASL_LENS_CACHE_MAX_MB", "3")
    monkeypatch.setenv("ASL_LENS_LIBRARY_QUOTA_MB", "50")
    cache = DiskCache(tmp_path / "cache")
    cache.put("features", "d" * 64, {"x": np.zeros(2**17, np.float32)}, {})  # 0.5 MiB
    at = AppTest.from_file(str(ROOT / "app_pages" / "01_Checkpoints.py"), default_timeout=120)
    at.run()
    assert not at.exception
    texts = [str(p.proto.text) for p in at.get("progress")]
    lib_mib = library.library_usage(ro_library).bytes / 2**20
    assert any(f"Library: {lib_mib:,.1f} MiB of its 50.0 MiB quota · 3 checkpoint(s)" in t for t in texts), texts
    assert any("Cache: 0.5 MiB of its 3.0 MiB cap · 1 entries" in t for t in texts), texts
    assert at.get("file_uploader"), "upload is offered when the server is not read-only"


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()[:120]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_message_and_loses_nothing(small_disk, ro_library, monkeypatch, tally, capsys):
    lib, cache_root = small_disk / "lib", small_disk / "cache"
    lib.mkdir()
    good = ro_library / "baseline.safetensors"
    library.import_checkpoint(good, good.name, lib)
    cache = DiskCache(cache_root, max_bytes=2**30)  # the cap is not what stops it here: the disk is
    cache.put("features", "e" * 64, {"x": np.arange(1000, dtype=np.float32)}, {"n": 1})
    # fill the rest of the disk
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    before = tree_digest(lib, cache_root)
    outcomes = []
    for label, fn in {
        "library import (bytes)": lambda: library.import_checkpoint(good.read_bytes(), "more.safetensors", lib, allow_duplicate=True),
        "library import (path)": lambda: library.import_checkpoint(good, "again.safetensors", lib, allow_duplicate=True),
    }.items():
        outcome, message = _attempt(fn, StorageError)
        lost = tree_digest(lib, cache_root) != before
        tally.add("full disk (3 MB tmpfs)", outcome, lost, message.replace(str(small_disk), "..."))
        outcomes.append((label, outcome, message, lost))
    rc = library.main(["--folder", str(lib), "import", str(good), "--name", "cli", "--allow-duplicate"])
    err = capsys.readouterr().err.strip().splitlines()
    ok = rc == 2 and len(err) == 1 and "full" in err[0]
    tally.add("full disk (3 MB tmpfs)", "refused" if ok else "crash", tree_digest(lib, cache_root) != before,
              err[0].replace(str(small_disk), "...") if err else "")
    # the cache on a full disk: the write is skipped (logged), nothing crashes, the old entry reads back
    cache.put("features", "f" * 64, {"x": np.ones(200_000, np.float32)}, {"n": 2})
    old = cache.get("features", "e" * 64)
    cache_ok = cache.get("features", "f" * 64) is None and old is not None and old[1] == {"n": 1}
    tally.add("full disk (3 MB tmpfs)", "refused" if cache_ok else "crash", tree_digest(lib, cache_root) != before,
              "cache write skipped (logged); older entries still read")
    leftovers = [p.name for p in lib.iterdir() if p.name.startswith(".")]
    assert all(o == "refused" and "full" in m and not lost for _, o, m, lost in outcomes), outcomes
    assert ok, (rc, err)
    assert cache_ok
    assert not leftovers, leftovers
    assert [p.name for p in library.list_checkpoints(lib)] == ["baseline.safetensors"]
    tally.facts["disk filled (3 MB tmpfs holding library and cache)"] = (
        "imports refused with 'the disk ... is full', no temporary file left, library and cache unchanged and readable")
