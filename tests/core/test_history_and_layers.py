"""The training-history figure (one panel per kind of term) and layer labels (name · kind · width)."""

from __future__ import annotations

import pytest
from torch import nn

from asl_core.models import build_model, describe_layer, layer_labels, list_layers
from asl_core.report.figures import _nice_step, history_figure


def _history(epochs=12):
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"epoch": e, "lr": 0.1, "train_loss": 60.0 / e + 1, "train_ce": 2.3 / e, "val_loss": 2.0 / e,
                     "train_accuracy": 0.5 + e / 40, "val_accuracy": 0.4 + e / 40, "val_macro_f1": 0.3 + e / 40,
                     "layers": {"embedding.1": {"agg": 0.1, "scope": 80.0 / e, "as": 4.0 - e},
                                "block3.0": {"agg": 0.2, "scope": 40.0 / e, "as": 2.0}}})
    return rows


def test_history_has_one_panel_per_kind_with_its_own_axis():
    fig = history_figure(_history(), title="")
    axes = {t.yaxis for t in fig.data}
    assert len(axes) == 4
    by_axis = {ax: [t.name for t in fig.data if t.yaxis == ax] for ax in sorted(axes)}
    assert by_axis["y"] == ["train_loss", "train_ce", "val_loss"]
    assert by_axis["y2"] == ["train_accuracy", "val_accuracy", "val_macro_f1"]
    # terms that are always positive span decades (0.1 .. 80): a log axis; the signed ones a linear axis
    assert by_axis["y3"] == ["embedding.1.agg", "embedding.1.scope", "block3.0.agg", "block3.0.scope", "block3.0.as"]
    assert by_axis["y4"] == ["embedding.1.as"]
    assert fig.layout.yaxis3.type == "log" and fig.layout.yaxis4.type == "linear" and fig.layout.yaxis2.range == (0, 1.02)
    # every per-layer line differs from every other in colour and dash
    styles = [(t.line.color, t.line.dash) for t in fig.data if t.yaxis in ("y3", "y4")]
    assert len({c for c, _ in styles}) == 6 and len(set(styles)) == 6
    # legends sit right of the plots, one per panel, each at its panel's top: none covers a title
    legends = [fig.layout.legend, fig.layout.legend2, fig.layout.legend3, fig.layout.legend4]
    assert all(lg.x > 1 and lg.xanchor == "left" for lg in legends)
    assert [lg.y for lg in legends] == [fig.layout[f"yaxis{s}"].domain[1] for s in ("", "2", "3", "4")]
    assert [a.text for a in fig.layout.annotations][:2] == ["loss terms", "accuracy / F1"]
    assert fig.layout.xaxis4.dtick == 2 and fig.layout.xaxis4.tickformat == "d"


def test_history_without_layer_terms_and_with_negative_terms():
    rows = [{"epoch": e, "train_fp_cls": 1.0 / e, "train_fp_neg": -0.2, "val_accuracy": 0.5} for e in (1, 2)]
    fig = history_figure(rows)
    assert {t.yaxis for t in fig.data} == {"y", "y2"}
    assert fig.layout.yaxis.type in (None, "linear")
    assert len(history_figure([]).data) == 0


@pytest.mark.parametrize("n,step", [(1, 1), (10, 1), (11, 2), (30, 5), (40, 5), (100, 10), (101, 20), (400, 50)])
def test_epoch_ticks_are_round(n, step):
    assert _nice_step(n) == step


def test_layer_labels_name_kind_and_width():
    model = build_model("digits_cnn", 10, in_channels=1)
    model.train()
    labels = layer_labels(model, (1, 8, 8))
    assert list(labels) == list_layers(model)
    assert labels["embedding.1"] == "embedding.1 · Linear · 64" and labels["fc"] == "fc · Linear · 10"
    assert labels["block3"] == "block3 · Sequential · 128"
    assert model.training  # mode restored
    # a shape the model cannot take: labels without widths, not an error
    assert layer_labels(model, (3, 8, 8))["fc"] == "fc · Linear"
    assert describe_layer("x", nn.ReLU(), 64) == "x · ReLU · 64"
    resnet = layer_labels(build_model("resnet18", 10), (3, 32, 32), ["layer3.1", "avgpool"])
    assert resnet == {"layer3.1": "layer3.1 · BasicBlock · 256", "avgpool": "avgpool · AdaptiveAvgPool2d · 512"}
