"""`make demo`'s training step: the five demo checkpoints on mnist-lt (the strongest control among them), reused when current."""

from __future__ import annotations

import json

from asl_core import demo
from asl_core.checkpoint import load_checkpoint


def test_demo_trains_the_five_models_then_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "cache"))
    paths = demo.ensure_demo_checkpoints(tmp_path / "lib", progress=False, epochs=1)
    assert list(paths) == ["baseline", demo.STRONG, "asloss", "clonal", "kd"]
    assert set(demo.DEMO_COMPARISON) <= set(paths) and demo.DEMO_COMPARISON[:2] == ("baseline", demo.STRONG)
    metas = {name: load_checkpoint(path).meta for name, path in paths.items()}
    assert {m.dataset["name"] for m in metas.values()} == {"mnist-lt"}
    assert metas["clonal"].parents["teacher_mode"] == "oof" and len(metas["clonal"].parents["fold_baselines"].split(",")) == 3
    assert metas["kd"].parents["fold_baselines"] == metas["clonal"].parents["fold_baselines"]
    assert "confusing_set_mean" in metas["clonal"].diagnostics
    stamps = {name: path.stat().st_mtime_ns for name, path in paths.items()}
    demo.ensure_demo_checkpoints(tmp_path / "lib", progress=False, epochs=1)
    assert {name: path.stat().st_mtime_ns for name, path in paths.items()} == stamps  # nothing retrained
    assert "clonal" in demo.metrics_table(paths)


def test_the_strongest_control_and_its_settings_come_from_the_controls_search(tmp_path):
    record = tmp_path / "s.json"
    assert demo.strongest(record) == ("logit-adjusted", {}, "asloss")  # no record: the standard long-tail fix
    conf = lambda v: {"configs": [{"mean_val_macro_f1": v}]}  # noqa: E731
    record.write_text(json.dumps({"methods": {
        "ce-tuned": {**conf(0.80), "chosen": {"lr": 0.01}}, "logit-adjusted": {**conf(0.85), "chosen": {"la_tau": 1.5}},
        "asloss": conf(0.70), "clonal": conf(0.75)}}))
    assert demo.strongest(record) == ("logit-adjusted", {"la_tau": 1.5}, "clonal")
    config = demo.demo_config(demo.DEMO_CONFIG, demo.STRONG)
    assert all(config.hyperparams()[k] == v for k, v in demo.STRONG_SETTINGS.items())
