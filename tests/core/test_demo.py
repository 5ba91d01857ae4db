"""`make demo`'s training step: the five demo checkpoints on mnist-lt (the strongest control among them), reused when current."""

from __future__ import annotations

from asl_core import demo
from asl_core.checkpoint import load_checkpoint


def test_demo_trains_the_five_models_then_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "cache"))
    paths = demo.ensure_demo_checkpoints(tmp_path / "lib", progress=False, epochs=1)
    assert list(paths) == ["baseline", "logit-adjusted", "asloss", "clonal", "kd"]
    assert set(demo.DEMO_COMPARISON) <= set(paths) and "logit-adjusted" in demo.DEMO_COMPARISON
    metas = {name: load_checkpoint(path).meta for name, path in paths.items()}
    assert {m.dataset["name"] for m in metas.values()} == {"mnist-lt"}
    assert metas["clonal"].parents["teacher_mode"] == "oof" and len(metas["clonal"].parents["fold_baselines"].split(",")) == 3
    assert metas["kd"].parents["fold_baselines"] == metas["clonal"].parents["fold_baselines"]
    assert "confusing_set_mean" in metas["clonal"].diagnostics
    stamps = {name: path.stat().st_mtime_ns for name, path in paths.items()}
    demo.ensure_demo_checkpoints(tmp_path / "lib", progress=False, epochs=1)
    assert {name: path.stat().st_mtime_ns for name, path in paths.items()} == stamps  # nothing retrained
    assert "clonal" in demo.metrics_table(paths)
