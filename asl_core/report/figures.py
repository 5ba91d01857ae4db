"""Plotly figure builders. They take arrays or result objects and return a figure; they
compute nothing beyond what drawing needs.

Scatter points carry ``customdata`` = dataset sample index, so a page can map plotly
selection events back to samples and pass a ``highlight`` set of indices to dim the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

COLOR_BY = ("true", "pred", "correct", "confidence", "category", "value")
# Up to 10 classes: Tableau's category10 (D3), whose neighbours differ in hue (Plotly's default
# made 0/3, 4/9 and 2/7 look alike). More classes: Kelly's 20 colours of maximum contrast (white
# and black dropped), then category10 again. Distinct for 30 classes.
_TEN = qualitative.D3
_KELLY = ("#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#848482", "#008856", "#E68FAC", "#0067A5",
          "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522", "#E25822", "#2B3D26")
_MANY = _KELLY + tuple(_TEN)
OTHER_COLOR = "#c8c8c8"


def class_palette(num_classes: int) -> list[str]:
    """One colour per class: distinct for up to 30 classes (then they repeat)."""
    base = _TEN if num_classes <= len(_TEN) else _MANY
    return [base[c % len(base)] for c in range(num_classes)]


def _class_color(c: int, num_classes: int = 10) -> str:
    return class_palette(max(num_classes, c + 1))[c]


def scatter_figure(
    coords,
    labels,
    preds,
    confidence,
    class_names: Sequence[str],
    color_by: str = "true",
    highlight: Iterable[int] | None = None,
    title: str = "",
    hover_index=None,
    marker_size: float = 6,
    opacity: float = 0.8,
    show_legend: bool = True,
    axis_titles: tuple[str, str] = ("", ""),
    isolate: Iterable[int] | None = None,
    categories: tuple[Sequence[int], Sequence[str], Sequence[str]] | None = None,
    values: Sequence[float] | None = None,
    value_title: str = "",
    value_range: tuple[float, float] = (0.0, 1.0),
    value_scale: str = "Viridis",
) -> go.Figure:
    """WebGL scatter of ``coords`` ``[n, 2]`` with ``labels``/``preds``/``confidence`` ``[n]``.

    ``hover_index`` ``[n]``: dataset sample index per point (shown on hover and stored as
    ``customdata``; defaults to ``0..n-1``). ``highlight``: sample indices to keep bright;
    the others are dimmed. ``isolate``: classes to show in colour (by true class, or by
    prediction when colouring by prediction); the other points are drawn grey and faint,
    underneath. ``marker_size``/``opacity`` set the points' look. ``color_by="category"`` colours by
    ``categories`` (per-point codes, names, colours: e.g. the flip type); ``color_by="value"`` by
    ``values`` on ``value_scale`` over ``value_range`` (e.g. the change of confidence)."""
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    coords = np.asarray(coords, dtype=float)
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    confidence = np.asarray(confidence, dtype=float)
    index = np.arange(len(labels)) if hover_index is None else np.asarray(hover_index).astype(int)
    names = [str(c) for c in class_names]
    hl = None if highlight is None else np.isin(index, np.fromiter(highlight, dtype=int))
    correct = labels == preds
    text = [f"sample {i}<br>label {names[y]}<br>pred {names[p]}<br>confidence {c:.3f}"
            for i, y, p, c in zip(index, labels, preds, confidence)]
    text = np.asarray(text, dtype=object)
    fig = go.Figure()

    by_class = preds if color_by == "pred" else labels
    shown = np.ones(len(labels), bool)
    if isolate is not None:
        shown = np.isin(by_class, np.fromiter(isolate, dtype=int))

    def add(mask: np.ndarray, name: str, marker: dict[str, Any], legend: bool = True) -> None:
        mask = mask & shown
        if hl is not None:
            alpha = np.where(hl[mask], max(opacity, 0.95), min(opacity, 0.12))
            marker = {**marker, "opacity": alpha.tolist(), "size": np.where(hl[mask], marker_size + 3, marker_size).tolist()}
        fig.add_trace(go.Scattergl(
            x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=name, showlegend=legend and show_legend,
            customdata=index[mask], text=text[mask], hovertemplate="%{text}<extra></extra>",
            marker={"size": marker_size, "opacity": opacity, **marker},
        ))

    if not shown.all():  # the rest, grey and underneath, still selectable
        rest = ~shown
        fig.add_trace(go.Scattergl(
            x=coords[rest, 0], y=coords[rest, 1], mode="markers", name="other classes", showlegend=show_legend,
            customdata=index[rest], text=text[rest], hovertemplate="%{text}<extra></extra>",
            marker={"size": max(marker_size - 2, 2), "opacity": 0.25, "color": OTHER_COLOR},
        ))
    if color_by == "category":
        codes, cat_names, cat_colors = categories
        codes = np.asarray(codes)
        for j, (cname, ccolor) in enumerate(zip(cat_names, cat_colors)):
            if (codes == j).any():
                add(codes == j, cname, {"color": ccolor})
    elif color_by == "value":
        v = np.asarray(values, dtype=float)
        add(np.ones(len(labels), bool), value_title,
            {"color": v[shown], "colorscale": value_scale, "cmin": value_range[0], "cmax": value_range[1],
             "showscale": show_legend, "colorbar": {"title": value_title}}, legend=False)
    elif color_by == "confidence":
        add(np.ones(len(labels), bool), "confidence",
            {"color": confidence[shown], "colorscale": "Viridis", "cmin": 0, "cmax": 1, "showscale": show_legend,
             "colorbar": {"title": "confidence"}},
            legend=False)
    elif color_by == "correct":
        add(correct, "correct", {"color": "#2ca02c"})
        add(~correct, "wrong", {"color": "#d62728", "symbol": "x"})
    else:
        palette = class_palette(len(names))
        for c in np.unique(by_class[shown]):
            add(by_class == c, names[c], {"color": palette[int(c)]})
    fig.update_layout(title=title, xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], showlegend=show_legend,
                      legend_title={"true": "true class", "pred": "predicted",
                      "correct": "", "confidence": ""}.get(color_by, ""), dragmode="lasso", clickmode="event+select",
                      margin={"l": 36 if axis_titles[1] else 10, "r": 10, "t": 64, "b": 36 if axis_titles[0] else 10},
                      template="plotly_white")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, scaleanchor="x", scaleratio=1)
    return fig


def confusion_figure(cm, class_names: Sequence[str], normalized: bool = False, title: str = "") -> go.Figure:
    """Heatmap of ``cm`` ``[C, C]`` (rows true, columns predicted): counts or row-normalised values."""
    cm = np.asarray(cm, dtype=float)
    names = [str(c) for c in class_names]
    fmt = ".2f" if normalized else ".0f"
    fig = go.Figure(go.Heatmap(
        z=cm, x=names, y=names, colorscale="Blues", zmin=0, zmax=1 if normalized else None, texttemplate=f"%{{z:{fmt}}}",
        hovertemplate="true %{y}<br>pred %{x}<br>%{z:" + fmt + "}<extra></extra>",
        colorbar={"title": "fraction" if normalized else "count"},
    ))
    return _matrix_layout(fig, title or ("confusion (row-normalised)" if normalized else "confusion (counts)"))


IMPROVEMENT_SCALE = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]


def improvement(delta) -> np.ndarray:
    """``delta`` (B - A) signed so that positive means B is better: the diagonal as is (more
    correct), off the diagonal negated (fewer errors)."""
    delta = np.asarray(delta, dtype=float)
    gain = -delta
    np.fill_diagonal(gain, np.diag(delta))
    return gain


def delta_figure(delta, class_names: Sequence[str], title: str = "") -> go.Figure:
    """Heatmap of ``delta`` ``[C, C]`` = B - A, coloured by improvement: blue where B is better
    (more correct answers on the diagonal, fewer errors off it), red where it is worse. The
    cells print the raw change; the colour bar says which way is better."""
    delta = np.asarray(delta, dtype=float)
    gain = improvement(delta)
    names = [str(c) for c in class_names]
    bound = float(np.abs(delta).max()) or 1.0
    is_int = np.allclose(delta, np.round(delta))
    fmt = ".0f" if is_int else ".2f"
    kind = np.where(np.eye(len(names), dtype=bool), "correct answers", "errors")
    text = np.vectorize(lambda v: "" if v == 0 else format(v, "+" + fmt))(delta)
    fig = go.Figure(go.Heatmap(
        z=gain, x=names, y=names, colorscale=IMPROVEMENT_SCALE, zmid=0, zmin=-bound, zmax=bound, text=text,
        texttemplate="%{text}", customdata=np.dstack([delta, kind]),
        hovertemplate="true %{y}<br>pred %{x}<br>B − A %{customdata[0]} %{customdata[1]}<extra></extra>",
        colorbar={"title": {"text": "B vs A", "side": "right"}, "tickvals": [-bound, 0, bound],
                  "ticktext": ["worse", "same", "better"]},
    ))
    return _matrix_layout(fig, title or "confusion delta (B − A), coloured by improvement")


def _matrix_layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", template="plotly_white",
                      margin={"l": 10, "r": 10, "t": 64, "b": 10})
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


LAYER_METRICS = ("silhouette", "davies_bouldin", "calinski_harabasz", "knn_accuracy", "within_between_ratio")


def layer_metrics_figure(table: Sequence[dict[str, Any]], metrics: Sequence[str] = LAYER_METRICS) -> go.Figure:
    """Grouped bars, one panel per metric. ``table``: rows with ``model``, ``layer`` and the metric
    keys (``Comparison.layer_table()``)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.replace("_", " ") for m in metrics])
    models = list(dict.fromkeys(r["model"] for r in table))
    for j, model in enumerate(models):
        rows = [r for r in table if r["model"] == model]
        for col, metric in enumerate(metrics, start=1):
            fig.add_trace(go.Bar(x=[r["layer"] for r in rows], y=[r.get(metric) for r in rows], name=model,
                                 marker_color=_class_color(j, len(models)), showlegend=col == 1, legendgroup=model), row=1, col=col)
    fig.update_layout(barmode="group", template="plotly_white", title="representation metrics per layer",
                      margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


# per-layer ASLoss terms: a colour per line and a dash per term (agg, sep, ...), so that every line differs
_LAYER_COLORS = qualitative.Dark24
_TERM_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_SCORE_COLORS = qualitative.Set1
LAYER_TERMS_LOG = "ASLoss terms per layer (log axis)"
LAYER_TERMS_SIGNED = "ASLoss terms per layer that can be negative"
_LOSS_COLORS = qualitative.D3


def history_figure(history: Sequence[dict[str, Any]], title: str = "training history") -> go.Figure:
    """The training history in one panel per kind of term, each on its own y axis, sharing the
    epoch axis: the objective's terms (``train_*`` losses and ``val_loss``), the scores
    (accuracies and F1, 0..1) and, when logged, the per-layer ASLoss terms
    (``layers.{name}.{agg,sep,scope,as}``): those always positive on a log axis (they span
    decades: a scope of 80 next to an aggregation of 0.1), the signed ones (the combined ``as``)
    on a linear axis of their own. Each panel has its legend beside it, so no legend covers a title."""
    from plotly.subplots import make_subplots

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    keys = list(dict.fromkeys(k for row in history for k, v in row.items()
                              if k.startswith(("train_", "val_")) and isinstance(v, (int, float))))
    scores = [k for k in keys if k.endswith(("accuracy", "f1"))]
    losses = [k for k in keys if k not in scores]
    layer_terms = list(dict.fromkeys((n, t) for row in history for n, terms in (row.get("layers") or {}).items()
                                     for t in terms))

    def layer_values(name: str, term: str) -> list:
        return [(r.get("layers") or {}).get(name, {}).get(term) for r in history]

    positive = [item for item in layer_terms
                if all(v > 0 for v in layer_values(*item) if isinstance(v, (int, float)))
                and any(isinstance(v, (int, float)) for v in layer_values(*item))]
    signed = [item for item in layer_terms if item not in positive]
    panels = [(name, items) for name, items in (("loss terms", losses), ("accuracy / F1", scores),
                                                 (LAYER_TERMS_LOG, positive), (LAYER_TERMS_SIGNED, signed)) if items]
    if not panels:
        panels = [("loss terms", [])]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[name for name, _ in panels])
    for row, (panel, items) in enumerate(panels, start=1):
        legend = "legend" if row == 1 else f"legend{row}"
        if panel in (LAYER_TERMS_LOG, LAYER_TERMS_SIGNED):
            for name, term in items:
                k = layer_terms.index((name, term))  # the same line keeps its style in either panel
                fig.add_trace(go.Scatter(x=epochs, y=layer_values(name, term), name=f"{name}.{term}", mode="lines",
                                         legend=legend, line={"width": 1.6, "color": _LAYER_COLORS[k % len(_LAYER_COLORS)],
                                                              "dash": _TERM_DASHES[k % len(_TERM_DASHES)]}),
                              row=row, col=1)
            log = panel == LAYER_TERMS_LOG
            fig.update_yaxes(type="log" if log else "linear", tickformat="~g", row=row, col=1, nticks=None if log else 6)
        else:
            palette = _SCORE_COLORS if panel == "accuracy / F1" else _LOSS_COLORS
            for i, k in enumerate(items):
                fig.add_trace(go.Scatter(x=epochs, y=[r.get(k) for r in history], name=k, mode="lines+markers",
                                         marker={"size": 4}, legend=legend,
                                         line={"color": palette[i % len(palette)], "dash": "dot" if k.startswith("val_") else "solid"}),
                              row=row, col=1)
            if panel == "accuracy / F1":
                fig.update_yaxes(range=[0, 1.02], dtick=0.2, tickformat=".1f", row=row, col=1)
            else:
                fig.update_yaxes(tickformat="~g", nticks=6, rangemode="tozero", row=row, col=1)
    # one legend per panel, to the right of it, top-aligned with the panel (not over the titles)
    layout: dict[str, Any] = {}
    for row in range(1, len(panels) + 1):
        top = fig.layout[f"yaxis{'' if row == 1 else row}"].domain[1]
        layout["legend" if row == 1 else f"legend{row}"] = {"x": 1.01, "xanchor": "left", "y": top, "yanchor": "top",
                                                             "font": {"size": 11}, "tracegroupgap": 2}
    fig.update_layout(**layout, title=title or None, template="plotly_white", height=240 * len(panels) + 60,
                      margin={"l": 10, "r": 10, "t": 70 if title else 30, "b": 10})
    fig.update_xaxes(tickformat="d", title_text="epoch", row=len(panels), col=1)
    fig.update_xaxes(tickformat="d", dtick=_nice_step(len(epochs)))
    return fig


def _nice_step(n: int, most: int = 10) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... that puts at most ``most`` ticks on ``n`` epochs."""
    step = 1
    while n / step > most:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return step


def confusing_set_figure(history: Sequence[dict[str, Any]]) -> go.Figure | None:
    """ClonalNet's mechanism per epoch: the share of training samples whose confusing set S has
    each size (|S| = 1: the teacher said nothing beyond the label), and the teacher's accuracy on
    the training batches. ``None`` when the run logged no confusing sets."""
    rows = [row for row in history if row.get("confusing_set_hist")]
    if not rows:
        return None
    epochs = [row["epoch"] for row in rows]
    sizes = np.array([row["confusing_set_hist"] for row in rows], dtype=float)
    shares = sizes / np.maximum(sizes.sum(axis=1, keepdims=True), 1)
    fig = go.Figure()
    for size in range(1, shares.shape[1]):
        if shares[:, size].max() > 0:
            fig.add_bar(x=epochs, y=shares[:, size], name=f"|S| = {size}", marker_color=_class_color(size - 1))
    accs = [row.get("teacher_train_accuracy") for row in rows]
    if any(a is not None for a in accs):
        fig.add_scatter(x=epochs, y=accs, name="teacher right", mode="lines+markers", line={"color": "black", "dash": "dot"})
    fig.update_layout(barmode="stack", title="Confusing set size per training sample", height=360,
                      margin={"t": 50, "l": 50, "r": 10, "b": 40}, legend={"traceorder": "reversed"},
                      xaxis={"title": "epoch", "tickformat": "d", "dtick": _nice_step(len(epochs))},
                      yaxis={"range": [0, 1], "tickformat": ".0%", "title": "share of samples"})
    return fig


def pair_count_figure(history: Sequence[dict[str, Any]], class_names: Sequence[str]) -> go.Figure | None:
    """Ordered same-class pairs each class had per epoch: what ASLoss's aggregation term could see
    (a class with 0 never pulls together). Log axis; 0 is drawn at 0.5."""
    rows = [row for row in history if row.get("same_class_pairs")]
    if not rows:
        return None
    epochs = [row["epoch"] for row in rows]
    counts = np.array([row["same_class_pairs"] for row in rows], dtype=float)
    fig = go.Figure()
    for c in range(counts.shape[1]):
        name = class_names[c] if c < len(class_names) else str(c)
        fig.add_scatter(x=epochs, y=np.maximum(counts[:, c], 0.5), name=str(name), mode="lines", line={"color": _class_color(c)})
    fig.update_layout(title="Same-class pairs per epoch, per class", height=360, margin={"t": 50, "l": 60, "r": 10, "b": 40},
                      legend={"title": "class"}, xaxis={"title": "epoch", "tickformat": "d", "dtick": _nice_step(len(epochs))},
                      yaxis={"type": "log", "title": "ordered pairs", "dtick": 1, "tickformat": "~s"})  # ticks at 1, 10, 100
    return fig


def per_class_figure(class_labels: Sequence[str], scores: dict[str, Sequence[float]], title: str = "") -> go.Figure:
    """Grouped bars per class of one model: ``scores`` ``{"recall": [C], "precision": [C], "f1": [C]}``.
    ``class_labels`` may carry the training count (``"7 · 42 train · tail"``)."""
    fig = go.Figure()
    colors = {"recall": "#1f77b4", "precision": "#ff7f0e", "f1": "#2ca02c"}
    for key in ("recall", "precision", "f1"):
        fig.add_bar(x=list(class_labels), y=list(scores[key]), name="F1" if key == "f1" else key, marker_color=colors[key],
                    hovertemplate="%{x}<br>" + key + " %{y:.3f}<extra></extra>")
    fig.update_layout(barmode="group", template="plotly_white", title=title or "per-class scores", height=360,
                      yaxis={"range": [0, 1], "title": "score"}, xaxis={"title": "class (training samples)", "type": "category"},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
                      margin={"l": 50, "r": 10, "t": 70, "b": 50})
    return fig


def per_class_delta_figure(class_labels: Sequence[str], deltas: dict[str, Sequence[float]], metric: str = "F1",
                           reference: str = "reference") -> go.Figure:
    """Horizontal bars of the per-class change (model minus reference) for each compared model,
    classes sorted by the first model's change (largest gain on top). ``deltas``: ``{model: [C]}``."""
    models = list(deltas)
    first = np.asarray(deltas[models[0]], dtype=float)
    order = sorted(range(len(class_labels)), key=lambda c: (first[c], -c))  # plotly draws the first category at the bottom
    labels = [str(class_labels[c]) for c in order]
    fig = go.Figure()
    palette = ["#1f77b4", "#9467bd", "#8c564b"]
    for j, m in enumerate(models):
        d = np.asarray(deltas[m], dtype=float)[order]
        fig.add_bar(y=labels, x=d, orientation="h", name=m, marker_color=palette[j % len(palette)],
                    text=["" if abs(v) < 0.005 else f"{v:+.2f}" for v in d], textposition="outside", cliponaxis=False,
                    hovertemplate="%{y}<br>" + m + " − " + reference + " " + metric + " %{x:+.3f}<extra></extra>")
    bound = float(np.nanmax(np.abs([v for m in models for v in deltas[m]]))) if len(class_labels) else 0.0
    bound = max(bound, 0.05) * 1.25
    fig.update_layout(barmode="group", template="plotly_white", height=max(300, 34 * len(labels) * max(1, len(models)) // 1.4 + 90),
                      title=f"change in per-class {metric} against {reference} (sorted by change)",
                      xaxis={"title": f"Δ {metric} (model − {reference})", "range": [-bound, bound], "zeroline": True,
                             "zerolinecolor": "#444", "zerolinewidth": 1.5},
                      yaxis={"type": "category", "title": ""},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
                      margin={"l": 10, "r": 30, "t": 80, "b": 50})
    return fig
