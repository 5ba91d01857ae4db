"""The app under hostile uploads and many users at once (AppTest, the real page scripts)."""

from __future__ import annotations

import re
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui import state as S

from .conftest import tree_digest
from .corpus import checkpoint_cases

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_every_hostile_upload_is_a_message_in_the_app(app_library, tmp_path, monkeypatch, tally):
    """The whole corpus goes through the real upload form of the Checkpoints page."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for p in app_library.glob("*.safetensors"):
        (lib / p.name).write_bytes(p.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "entry.npz").write_bytes(b"cached")
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(lib))
    monkeypatch.setenv("ASL_LENS_CACHE", str(cache))
    marker = tmp_path / "pwned"
    good = (lib / "baseline.safetensors").read_bytes()
    from asl_core.checkpoint import load_checkpoint

    state = load_checkpoint(lib / "baseline.safetensors").model.state_dict()
    at = AppTest.from_file(str(ROOT / "app_pages" / "01_Checkpoints.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    problems = []
    for category, label, filename, data, kwargs in checkpoint_cases(good, state, str(marker), seed=1):
        if category == "wrong file type":
            continue  # st.file_uploader(type=...) refuses these itself, before any of our code runs
        sys.modules.pop("antigravity", None)
        before = tree_digest(lib, cache)
        at.file_uploader(key=S.CKPT_UPLOAD).set_value((filename, data, "application/octet-stream"))
        if "arch" in kwargs:
            at.selectbox(key=S.CKPT_UPLOAD_ARCH).set_value(kwargs["arch"])
            at.number_input(key=S.CKPT_UPLOAD_CLASSES).set_value(kwargs["num_classes"])
        at.button(key=S.CKPT_UPLOAD_SUBMIT).click()
        at.run()
        errors = _texts(at)
        crashed = bool(at.exception) or bool(marker.exists()) or "antigravity" in sys.modules
        lost = tree_digest(lib, cache) != before
        outcome = "crash" if crashed else ("refused" if errors else "accepted")
        tally.add(f"app upload: {category}", outcome, lost, errors[0] if errors else "")
        if outcome != "refused" or lost:
            problems.append(f"{category} / {label}: {outcome} lost={lost} {[e.message for e in at.exception][:1]}")
        elif any("Traceback" in e or "\n  File " in e for e in errors):
            problems.append(f"{category} / {label}: a traceback on the page")
    assert not problems, "\n".join(problems)


def test_eight_sessions_at_once(app_library, tmp_path, monkeypatch, tally):
    """8 AppTest sessions in threads, each on its own model and layer, share the process-wide
    caches (st.cache_resource models, the engine's disk cache): no exception, each page shows
    its own model's figures, and every cache entry written is readable afterwards."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(app_library))
    monkeypatch.setenv("ASL_LENS_CACHE", str(cache))
    # AppTest puts a mock Runtime in a process-wide global for each run and sets it back to
    # None when the run ends, so concurrent AppTests pull it from under each other. A real
    # server has one Runtime shared by every session: let Runtime.instance() fall back to the
    # last mock while any session runs.
    from streamlit.runtime import Runtime

    last: dict = {}

    def shared_instance(cls):
        if cls._instance is not None:
            last["runtime"] = cls._instance
            return cls._instance
        if "runtime" in last:
            return last["runtime"]
        raise RuntimeError("Runtime hasn't been created!")

    monkeypatch.setattr(Runtime, "instance", classmethod(shared_instance))
    jobs = [(m, layer) for m in ("baseline.safetensors", "asloss.safetensors", "clonal.safetensors")
            for layer in ("embedding", "block3", "fc")][:8]
    assert len(jobs) == 8
    results: dict[int, tuple] = {}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def session(i: int, model: str, layer: str) -> None:
        try:
            at = AppTest.from_file(str(ROOT / "app_pages" / "02_Explore.py"), default_timeout=TIMEOUT)
            at.run()
            at.selectbox(key=S.EXP_MODEL).set_value(model).run()
            at.selectbox(key=S.EXP_LAYER).set_value(layer).run()
            caption = next((c.value for c in at.caption if "trustworthiness" in c.value), "")
            metrics = {m.label: m.value for m in at.metric}
            if not caption:  # keep what the page did show, for the failure message
                shown = [(type(e).__name__, str(getattr(e, "value", ""))[:60]) for e in at.main]
                results[i] = ([f"no figures; page shows {shown[:12]}"], [], caption, metrics)
                return
            results[i] = ([e.message for e in at.exception], [e.value for e in at.error], caption, metrics)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = ([repr(exc)], [], "", {})

    start = time.perf_counter()
    threads = [threading.Thread(target=session, args=(i, m, layer)) for i, (m, layer) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # The figures each session should show, computed serially after the fact.
    from asl_core.engine.analysis import compare
    from asl_core.checkpoint import load_checkpoint
    from asl_core.engine.projection import ProjectionConfig

    problems = []
    for i, (model, layer) in enumerate(jobs):
        exceptions, errors, caption, metrics = results.get(i, (["no result"], [], "", {}))
        if exceptions or errors:
            problems.append(f"session {i}: {exceptions or errors}")
            continue
        ck = load_checkpoint(app_library / model)
        want = compare([ck], split="test", layer=layer, projection=ProjectionConfig(), metric_layers=[layer]).reference
        if f"layer `{layer}`" not in caption or not caption.startswith(ck.meta.name):
            problems.append(f"session {i}: shows {caption[:80]!r}, expected {ck.meta.name} / {layer}")
        acc = re.search(r"accuracy ([0-9.]+)", caption)
        if not acc or abs(float(acc.group(1)) - want.metrics["accuracy"]) > 5e-4:
            problems.append(f"session {i}: accuracy {acc and acc.group(1)} != {want.metrics['accuracy']:.3f}")
        sil = metrics.get("silhouette ↑")
        if sil is not None and abs(float(sil) - want.separability[layer]["silhouette"]) > 5e-3:
            problems.append(f"session {i}: silhouette {sil} != {want.separability[layer]['silhouette']:.3f}")
    # every cache entry that the sessions wrote can be read back
    entries = [p for p in cache.rglob("*.npz")] + [p for p in cache.rglob("*.npy")]  # features: .npy files
    for p in entries:
        if p.suffix == ".npy":
            _ = np.load(p, mmap_mode="r", allow_pickle=False).shape
            continue
        with np.load(p, allow_pickle=False) as z:
            _ = [z[k].shape for k in z.files]
    tally.facts["concurrent app sessions (AppTest threads, different models and layers)"] = (
        f"{len(jobs)} held, {sum(1 for r in results.values() if not r[0] and not r[1])} without error, "
        f"{elapsed:.0f} s wall")
    tally.facts["cache entries written concurrently, all readable"] = str(len(entries))
    tally.facts["peak RSS during the 8 sessions"] = f"{peak:.0f} MiB (before: {rss_before:.0f} MiB)"
    assert not problems, "\n".join(problems)
    assert entries, "the sessions wrote nothing to the disk cache"
