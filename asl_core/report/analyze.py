"""Compare 2-3 checkpoints on their shared dataset and write one self-contained HTML report.

    asl-lens analyze checkpoints/baseline.safetensors checkpoints/asloss.safetensors \
        --layers embedding,block3 --projection umap --out report.html --export features.parquet

The first checkpoint is the reference: deltas, flips and McNemar are against it. The first
of ``--layers`` is projected; every one of them gets separability figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asl_core.checkpoint import atomic_write_bytes, load_checkpoint
from asl_core.engine.analysis import compare
from asl_core.engine.cache import DiskCache
from asl_core.engine.options import InferenceOptions
from asl_core.engine.projection import ALIGNS, METHODS, ProjectionConfig
from asl_core.errors import UserError, cli_entry
from asl_core.report.html import build_report
from asl_core.report.tables import export_table
from asl_core.runtime import limit_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asl-lens analyze", description=__doc__,
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
    p.add_argument("--threads", type=int, default=None)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_threads(args.threads)
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
                  progress=progress, metric_layers=layers or None, options=InferenceOptions(device=args.device))
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
