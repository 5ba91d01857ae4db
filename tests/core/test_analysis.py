"""compare(), the figures and the analyze CLI on two tiny checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from asl_core.engine.analysis import common_layers, compare
from asl_core.report.analyze import main
from asl_core.report.html import build_report
from asl_core.engine.cache import DiskCache
from asl_core.checkpoint import LoadedCheckpoint
from asl_core.errors import LayerError, UserError
from asl_core.report.figures import confusion_figure, delta_figure, history_figure, layer_metrics_figure, scatter_figure
from asl_core.engine.metrics import confusion
from asl_core.engine.projection import ProjectionConfig
from asl_core.engine.options import InferenceOptions


@pytest.fixture()
def comparison(ckpts, tmp_path):
    return compare(ckpts, split="test", projection=ProjectionConfig(max_points=40), cache=DiskCache(tmp_path),
                   metric_layers=["embedding", "block3"], options=InferenceOptions(device="cpu"))


def test_compare(comparison, engine_splits):
    ref, other = comparison.models
    assert comparison.layer == "embedding" and comparison.metric_layers == ("embedding", "block3")
    assert ref.name == "m0" and other.name == "m1" and other.method == "asloss"
    y = engine_splits.test.y.numpy()
    np.testing.assert_array_equal(ref.features.labels, y)
    np.testing.assert_array_equal(ref.projection.sample, other.projection.sample)  # same samples
    assert ref.projection.coords.shape == (40, 2) and "40 of 50" in ref.projection.note
    assert any("40 of 50" in n for n in comparison.notes)
    np.testing.assert_array_equal(other.delta, confusion(y, other.features.preds, 10) - confusion(y, ref.features.preds, 10))
    assert ref.delta is None and ref.mcnemar is None and ref.flips is None
    assert other.mcnemar["b"] == sum(other.flips["right_to_wrong"]) and other.mcnemar["c"] == sum(other.flips["wrong_to_right"])
    assert set(ref.separability) == {"embedding", "block3"} and len(comparison.layer_table()) == 4
    assert 0 <= ref.projection.trustworthiness <= 1


def test_compare_errors(ckpts):
    assert "embedding" in common_layers(ckpts) and common_layers([]) == []
    with pytest.raises(LayerError, match="not in every model"):
        compare(ckpts, layer="nope")
    other_data = LoadedCheckpoint(ckpts[1].model, dataclasses.replace(ckpts[1].meta, dataset={**ckpts[1].meta.dataset, "seed": 7}))
    with pytest.raises(UserError, match="different data.*seed 0 vs 7"):
        compare([ckpts[0], other_data])
    no_data = LoadedCheckpoint(ckpts[1].model, dataclasses.replace(ckpts[1].meta, dataset=None))
    with pytest.raises(UserError, match="does not record its dataset"):
        compare([ckpts[0], no_data])
    with pytest.raises(UserError):
        compare([])


def test_report_has_every_section(comparison):
    html = build_report(comparison)
    for section in ("id='classification'", "id='projection'", "id='confusion'", "id='delta'", "id='mcnemar'",
                    "id='flips'", "id='layers'", "right→wrong", "silhouette", "trustworthiness", "40 of 50"):
        assert section in html, section
    assert html.count("plotly.js v") == 1 and html.count("Plotly.newPlot") >= 7
    assert "<script src=" not in html and "<script type=\"text/javascript\" src=" not in html  # nothing fetched


def test_cli_writes_report_and_export(tmp_path, ckpt_paths):
    out, export = tmp_path / "r.html", tmp_path / "f.csv"
    args = [str(p) for p in ckpt_paths] + ["--layers", "embedding,block3", "--projection", "pca", "--out", str(out),
                                             "--export", str(export), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    assert main(args) == 0
    assert out.stat().st_size > 100_000 and "id='flips'" in out.read_text()
    table = pd.read_csv(export)
    assert len(table) == 50 and {"sample_index", "label", "m0_x", "m1_y", "m1_pred", "m0_correct"} <= set(table.columns)
    assert main(args[:2] + ["--export", str(tmp_path / "f.parquet"), "--projection", "pca", "--out", str(out),
                            "--no-cache"]) == 0
    assert len(pd.read_parquet(tmp_path / "f.parquet")) == 50


def test_cli_errors_are_one_line(tmp_path, ckpt_paths, capsys):
    assert main([str(ckpt_paths[0]), str(tmp_path / "missing.safetensors")]) == 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main([str(ckpt_paths[0]), str(bad)]) == 2
    assert main([str(p) for p in ckpt_paths] + ["--layers", "nope", "--out", str(tmp_path / "x.html"), "--no-cache"]) == 2
    assert main([str(ckpt_paths[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 4 and "checkpoint not found" in errors[0] and "nope" in errors[2]
    assert "Traceback" not in "\n".join(err)


def test_figures():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    labels, preds = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    conf, index = np.linspace(0.4, 0.9, 6), np.array([10, 11, 12, 13, 14, 15])
    fig = scatter_figure(coords, labels, preds, conf, ["a", "b", "c"], hover_index=index)
    assert [t.type for t in fig.data] == ["scattergl"] * 3
    assert sorted(int(i) for t in fig.data for i in t.customdata) == index.tolist()
    assert "label a" in fig.data[0].text[0] and "confidence" in fig.data[0].text[0]
    wrong = scatter_figure(coords, labels, preds, conf, ["a", "b", "c"], color_by="correct", hover_index=index)
    assert [t.name for t in wrong.data] == ["correct", "wrong"] and list(wrong.data[1].customdata) == [11, 15]
    hl = scatter_figure(coords, labels, preds, conf, ["a", "b", "c"], color_by="confidence", hover_index=index, highlight={12})
    assert list(hl.data[0].marker.opacity).count(0.95) == 1
    with pytest.raises(ValueError):
        scatter_figure(coords, labels, preds, conf, ["a", "b", "c"], color_by="size")
    cm = np.array([[2, 1], [0, 3]])
    assert confusion_figure(cm, ["a", "b"]).data[0].type == "heatmap"
    assert confusion_figure(cm / 3, ["a", "b"], normalized=True).data[0].zmax == 1
    d = delta_figure(np.array([[-2, 1], [0, 1]]), ["a", "b"]).data[0]
    assert d.zmid == 0 and d.zmin == -2 and d.zmax == 2
    table = [{"model": "A", "layer": "embedding", "silhouette": 0.1, "davies_bouldin": 1.0, "calinski_harabasz": 5.0,
              "knn_accuracy": 0.8, "within_between_ratio": 0.7}]
    assert len(layer_metrics_figure(table).data) == 5
    history = [{"epoch": 1, "train_loss": 1.0, "train_ce": 0.9, "val_accuracy": 0.5, "lr": 0.1,
                "layers": {"embedding": {"agg": 0.1, "sep": 0.2, "scope": 0.3, "as": 0.4}}},
               {"epoch": 2, "train_loss": 0.8, "train_ce": 0.7, "val_accuracy": 0.6}]
    names = [t.name for t in history_figure(history).data]
    assert names == ["train_loss", "train_ce", "val_accuracy", "embedding.agg", "embedding.sep", "embedding.scope", "embedding.as"]


def test_compare_reports_each_stage_with_counts_in_order(ckpts, tmp_path):
    """Issue 18, item 7: extraction counts images and projection counts models, the fraction
    only grows, and a cached second run reports no extraction and no projection work."""
    seen: list[tuple[str, float]] = []
    config = ProjectionConfig(max_points=40)
    compare(ckpts, projection=config, cache=DiskCache(tmp_path),
            progress=lambda message, fraction: seen.append((message, fraction)), options=InferenceOptions(device="cpu"))
    messages = [m for m, _ in seen]
    assert any(m.startswith("extracting embedding of m0: 50 of 50 images") for m in messages), messages
    projecting = [m for m in messages if m.startswith("projecting embedding of 50 samples")]
    assert any(": 1 of 2 models" in m for m in projecting) and projecting[-1].endswith(": 2 of 2 models"), projecting
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    again: list[str] = []
    compare(ckpts, projection=config, cache=DiskCache(tmp_path),
            progress=lambda message, fraction: again.append(message), options=InferenceOptions(device="cpu"))
    assert not any("images" in m or "models" in m for m in again), again
