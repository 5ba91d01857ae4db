"""A process killed mid-epoch or mid-write leaves the previous checkpoint (and cache entry)
readable and unchanged: checked by really killing subprocesses with SIGKILL."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from asl_core.checkpoint import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_training_killed_mid_epoch_keeps_previous_checkpoint(tmp_path, good_checkpoints, tally):
    out = tmp_path / "model.safetensors"
    out.write_bytes(good_checkpoints["baseline"].read_bytes())
    before = _sha(out)
    # The child kills itself with SIGKILL in the middle of epoch 2, at its 27th optimiser step
    # (289 training samples in batches of 16: 18 steps an epoch), as an OOM killer would.
    proc = _run(f"""
        import os, signal, torch
        from asl_core.training import cli as t
        steps = {{"n": 0}}
        real_step = torch.optim.AdamW.step
        def step(self, *a, **k):
            steps["n"] += 1
            if steps["n"] == 27:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self, *a, **k)
        torch.optim.AdamW.step = step
        t.main(["--samples-per-class", "40", "--imbalance", "2", "--val-per-class", "4", "--test-per-class", "4",
                "--epochs", "5", "--batch-size", "16", "--quiet", "--out", {str(out)!r}])
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _sha(out) == before
    assert load_checkpoint(out).meta.method == "baseline"
    assert list_checkpoints(tmp_path) == [out]
    tally.facts["training killed (SIGKILL) mid-epoch"] = "previous checkpoint unchanged and loadable"


def test_killed_while_writing_a_checkpoint(tmp_path, good_checkpoints, tally):
    out = tmp_path / "model.safetensors"
    out.write_bytes(good_checkpoints["baseline"].read_bytes())
    before = _sha(out)
    # Half of the new file is written, then the process dies before the rename.
    proc = _run(f"""
        import os, signal
        from asl_core import checkpoint as c
        from asl_core.checkpoint import load_checkpoint, save_checkpoint
        real_fsync = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        ck = load_checkpoint({str(good_checkpoints["asloss"])!r})
        c.os.fsync = die
        save_checkpoint(ck.model, ck.meta, {str(out)!r})
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _sha(out) == before and load_checkpoint(out).meta.method == "baseline"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != out.name]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    assert list_checkpoints(tmp_path) == [out], "a half-written temp file must not be listed"
    tally.facts["process killed while writing a checkpoint"] = "previous file unchanged; the hidden temp file is never listed"


def test_killed_while_writing_a_cache_entry(tmp_path, tally):
    """Kill at the first fsync (array file) and at the second (its checksum record): older
    entries stay readable and the interrupted one is a clean miss, never a crash."""
    import numpy as np

    from asl_core.engine.cache import DiskCache

    cache = DiskCache(tmp_path / "cache")
    old = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    cache.put("features", "a" * 64, old, {"note": "old"})
    before = {p: _sha(p) for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    for nth in (1, 2):
        proc = _run(f"""
            import os, signal
            import numpy as np
            from asl_core import checkpoint as c
            from asl_core.engine.cache import DiskCache
            calls = {{"n": 0}}
            def die_at(fd):
                calls["n"] += 1
                if calls["n"] == {nth}:
                    os.kill(os.getpid(), signal.SIGKILL)
            c.os.fsync = die_at
            DiskCache({str(tmp_path / "cache")!r}).put("features", "b" * 64, {{"x": np.ones((1000, 64), np.float32)}}, {{"note": "new"}})
        """)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        fresh = DiskCache(tmp_path / "cache")
        arrays, meta = fresh.get("features", "a" * 64)
        assert np.array_equal(arrays["x"], old["x"]) and meta == {"note": "old"}
        assert fresh.get("features", "b" * 64) is None  # a miss: recomputed on next use
        assert all(_sha(p) == h for p, h in before.items())
    tally.facts["process killed while writing a cache entry (at either of its two writes)"] = (
        "older entries unchanged and readable; the interrupted entry is a clean miss")
