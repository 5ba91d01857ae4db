"""Compare 2-3 checkpoints on their shared dataset and write one self-contained HTML report.

    python -m asl_core.analyze checkpoints/baseline.safetensors checkpoints/asloss.safetensors \
        --layers embedding,block3 --projection umap --out report.html --export features.parquet

The first checkpoint is the reference: deltas, flips and McNemar are against it. The first
of ``--layers`` is projected; every one of them gets separability figures.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import Comparison, compare
from .cache import DiskCache
from .checkpoint import atomic_write_bytes, load_checkpoint
from .errors import UserError, cli_entry
from .figures import confusion_figure, delta_figure, layer_metrics_figure, scatter_figure
from .projection import ALIGNS, METHODS, ProjectionConfig

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h2{margin-top:1.6em}
.row{display:flex;flex-wrap:wrap;gap:1em}.cell{flex:0 0 auto}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}.note{color:#555;font-size:.9em}"""


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='note'>(none)</p>"
    cols = list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if np.isnan(v) else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class _Figures:
    """Turns figures into HTML divs, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig, height: int = 420, width: int = 470) -> str:
        # A fixed size: plotly measures a responsive figure before the page's layout settles,
        # and the first figure of a row then came out several times too wide and clipped.
        # The top margin keeps the title clear of the mode bar.
        fig.update_layout(height=height, width=width, autosize=False, margin={"t": 70})
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, config={"displaylogo": False})
        self.first = False
        return out


def build_report(comparison: Comparison) -> str:
    """The whole report as one HTML string (plotly.js inlined once, no network needed)."""
    cmp, fig = comparison, _Figures()
    names = cmp.class_names
    ref = cmp.reference
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ASL Lens report</title><style>{_CSS}</style></head><body>",
             f"<h1>ASL Lens comparison: {' vs '.join(html.escape(m.name) for m in cmp.models)}</h1>",
             f"<p>dataset <b>{html.escape(str(cmp.dataset.get('name', '')))}</b>, split <b>{html.escape(cmp.split)}</b>, "
             f"{len(ref.features)} samples; layer <b>{html.escape(cmp.layer)}</b> projected with "
             f"<b>{cmp.projection_config.method}</b> (seed {cmp.projection_config.seed}, align {cmp.projection_config.align}).</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in cmp.notes]

    parts.append("<h2 id='classification'>Classification</h2>")
    parts.append(_table([{"model": m.name, "method": m.method, "arch": m.arch, "accuracy": m.metrics["accuracy"],
                          "macro_f1": m.metrics["macro_f1"], "n": m.metrics["n"]} for m in cmp.models]))
    parts.append(_table([{"model": m.name, **{f"recall {c}": r for c, r in zip(names, m.metrics["per_class_recall"])}}
                         for m in cmp.models]))

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
        mc, a, b = m.mcnemar, html.escape(ref.name), html.escape(m.name)
        parts.append(f"<h3 id='mcnemar{sfx}'>McNemar exact test</h3><p>{a} right and {b} wrong: b = {mc['b']}; "
                     f"{a} wrong and {b} right: c = {mc['c']}; exact two-sided p = {mc['pvalue']:.4g} "
                     f"(n = {mc['n']}).</p>")
        flips = m.flips
        rows = [{"class": names[c], **{k: flips[k][c] for k in flips if k != "class"}} for c in flips["class"]]
        parts.append(f"<h3 id='flips{sfx}'>Flip table (per true class)</h3>" + _table(rows))

    parts.append("<h2 id='layers'>Representation metrics (full-dimensional features)</h2>")
    table = cmp.layer_table()
    parts.append(_table(table))
    parts.append(fig(layer_metrics_figure(table), 360, 1400))
    parts.append("</body></html>")
    return "\n".join(parts)


def export_table(comparison: Comparison):
    """A pandas DataFrame: one row per projected sample with, per model, x/y, prediction,
    confidence and correctness (columns prefixed with the model's name)."""
    import pandas as pd

    ref = comparison.reference
    rows = ref.projection.sample
    data: dict[str, Any] = {"sample_index": ref.features.index[rows], "label": ref.features.labels[rows],
                            "label_name": [comparison.class_names[y] for y in ref.features.labels[rows]]}
    for m in comparison.models:
        f, p = m.features, m.projection
        data.update({f"{m.name}_x": p.coords[:, 0], f"{m.name}_y": p.coords[:, 1], f"{m.name}_pred": f.preds[rows],
                     f"{m.name}_confidence": f.confidence[rows], f"{m.name}_correct": f.preds[rows] == f.labels[rows]})
    return pd.DataFrame(data)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asl_core.analyze", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="2 or 3 checkpoints; the first is the reference")
    p.add_argument("--layers", help="comma-separated layer names (default: the reference's embedding layer)")
    p.add_argument("--projection", choices=METHODS, default="umap")
    p.add_argument("--align", choices=ALIGNS, default="procrustes")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-points", type=int, default=ProjectionConfig.max_points)
    p.add_argument("--out", default="report.html", help="HTML report path")
    p.add_argument("--export", help="also write coordinates/labels/predictions to .parquet or .csv")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", help="cache root (default: $ASL_LENS_CACHE or .cache/)")
    p.add_argument("--no-cache", action="store_true")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 2 <= len(args.checkpoints) <= 3:
        raise UserError(f"give 2 or 3 checkpoints, got {len(args.checkpoints)}")
    if args.export and Path(args.export).suffix.lower() not in (".parquet", ".csv"):
        raise UserError("--export must end in .parquet or .csv")
    try:
        config = ProjectionConfig(method=args.projection, align=args.align, seed=args.seed, max_points=args.max_points)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    ckpts = [load_checkpoint(path) for path in args.checkpoints]
    layers = [s.strip() for s in (args.layers or "").split(",") if s.strip()]
    cache = None if args.no_cache else DiskCache(args.cache_dir)

    def progress(message: str, fraction: float) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr)

    cmp = compare(ckpts, split=args.split, layer=layers[0] if layers else None, projection=config, cache=cache,
                  progress=progress, metric_layers=layers or None, device=args.device)
    out = Path(args.out)
    try:
        atomic_write_bytes(out, build_report(cmp).encode())
        umask = os.umask(0)
        os.umask(umask)
        out.chmod(0o666 & ~umask)  # a report is for sharing; the atomic temp file starts private
        if args.export:
            table = export_table(cmp)
            if args.export.lower().endswith(".csv"):
                table.to_csv(args.export, index=False)
            else:
                table.to_parquet(args.export, index=False)
    except OSError as exc:
        raise UserError(f"cannot write output: {exc}") from None
    for m in cmp.models:
        extra = f"  McNemar p {m.mcnemar['pvalue']:.4g}" if m.mcnemar else ""
        print(f"{m.name:<16} acc {m.metrics['accuracy']:.4f}  macro-F1 {m.metrics['macro_f1']:.4f}  "
              f"trust {m.projection.trustworthiness:.3f}{extra}")
    print(f"wrote {out}" + (f" and {args.export}" if args.export else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
