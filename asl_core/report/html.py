"""HTML: one figure-to-HTML helper and the self-contained report (plotly.js inlined once, no
network needed), shared by ``asl-lens analyze`` and the app's downloads."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from asl_core.engine.analysis import Comparison
from asl_core.report.figures import confusion_figure, delta_figure, layer_metrics_figure, scatter_figure
from asl_core.report.tables import flip_table, mcnemar_sentence, recall_table, summary_table

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h2{margin-top:1.6em}
.row{display:flex;flex-wrap:wrap;gap:1em}.cell{flex:0 0 auto}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}.note{color:#555;font-size:.9em}"""




def html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>(none)</p>"

    def fmt(v) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


class FigureHtml:
    """Turns figures into HTML divs, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig: go.Figure, height: int | None = 420, width: int | None = 470) -> str:
        # A fixed size: plotly measures a responsive figure before the page's layout settles,
        # and the first figure of a row then came out several times too wide and clipped.
        # The top margin keeps the title clear of the mode bar.
        if height is not None:
            fig.update_layout(height=height, width=width, autosize=False, margin={"t": 70})
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, config={"displaylogo": False})
        self.first = False
        return out


def figures_page(figures: Iterable[go.Figure], title: str) -> str:
    """The figures, as they are, in one self-contained page."""
    fig = FigureHtml()
    body = "\n".join(fig(f, None) for f in figures)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>\n"
            f"{body}\n</body></html>")


def build_report(comparison: Comparison) -> str:
    """The whole report as one HTML string (plotly.js inlined once, no network needed)."""
    cmp, fig = comparison, FigureHtml()
    names = cmp.class_names
    ref = cmp.reference
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ASL Lens report</title><style>{_CSS}</style></head><body>",
             f"<h1>ASL Lens comparison: {' vs '.join(html.escape(m.name) for m in cmp.models)}</h1>",
             f"<p>dataset <b>{html.escape(str(cmp.dataset.get('name', '')))}</b>, split <b>{html.escape(cmp.split)}</b>, "
             f"{len(ref.features)} samples; layer <b>{html.escape(cmp.layer)}</b> projected with "
             f"<b>{cmp.projection_config.method}</b> (seed {cmp.projection_config.seed}, align {cmp.projection_config.align}).</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in cmp.notes]

    parts.append("<h2 id='classification'>Classification</h2>")
    parts.append(html_table(summary_table(cmp)))
    parts.append(html_table(recall_table(cmp)))

    parts.append(f"<h2 id='projection'>Projection ({html.escape(cmp.layer)}, {cmp.projection_config.method})</h2><div class='row'>")
    for m in cmp.models:
        p, f = m.projection, m.features
        s = scatter_figure(p.coords, f.labels[p.sample], f.preds[p.sample], f.confidence[p.sample], names,
                           color_by="true", title=f"{m.name}: trustworthiness {p.trustworthiness:.3f}", hover_index=f.index[p.sample])
        note = f"<p class='note'>{html.escape(p.note)}</p>" if p.note else ""
        parts.append(f"<div class='cell'>{fig(s, 460)}{note}</div>")
    parts.append("</div>")

    parts.append("<h2 id='confusion'>Confusion matrices</h2><div class='row'>")
    for m in cmp.models:
        parts.append(f"<div class='cell'>{fig(confusion_figure(m.confusion, names, title=f'{m.name}: counts'))}</div>")
        parts.append(f"<div class='cell'>{fig(confusion_figure(m.confusion_normalized, names, True, f'{m.name}: row-normalised'))}</div>")
    parts.append("</div>")

    for i, m in enumerate(cmp.models[1:]):
        sfx = "" if i == 0 else f"-{i + 1}"  # unique anchors with a third model
        parts.append(f"<h2 id='delta{sfx}'>{html.escape(m.name)} vs {html.escape(ref.name)}</h2><div class='row'>")
        parts.append(f"<div class='cell'>{fig(delta_figure(m.delta, names, f'confusion delta ({m.name} - {ref.name}, counts)'))}</div>")
        parts.append(f"<div class='cell'>{fig(delta_figure(m.delta_normalized, names, 'delta (row-normalised)'))}</div></div>")
        sentence = html.escape(mcnemar_sentence(ref.name, m.name, m.mcnemar))
        parts.append(f"<h3 id='mcnemar{sfx}'>McNemar exact test</h3><p>{sentence}</p>")
        parts.append(f"<h3 id='flips{sfx}'>Flip table (per true class)</h3>" + html_table(flip_table(cmp, m)))

    parts.append("<h2 id='layers'>Representation metrics (full-dimensional features)</h2>")
    table = cmp.layer_table()
    parts.append(html_table(pd.DataFrame(table)))
    parts.append(fig(layer_metrics_figure(table), 360, 1400))
    parts.append("</body></html>")
    return "\n".join(parts)
