"""The embedded demo: baseline, ASLoss, ClonalNet and KD checkpoints on ``digits-hard``.

    asl-lens demo            # train what is missing, print the metrics side by side
    asl-lens demo --serve    # ... then start the app on localhost

Checkpoints that exist and load are reused; a broken one is retrained (the old file is
only replaced once the new one is complete).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from asl_core.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.errors import CheckpointError, UserError, cli_entry
from asl_core.objectives import get_objective
from asl_core.settings import get_settings
from asl_core.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = "digits-hard"
# name -> method; clonal and kd learn from the demo baseline
DEMO_MODELS = {"baseline": "baseline", "asloss": "asloss", "clonal": "clonal", "kd": "kd"}
# what the app's Compare page opens on when the demo library is present
DEMO_COMPARISON = ("baseline", "asloss", "clonal")


def ensure_demo_checkpoints(folder: Path, force: bool = False, progress: bool = True, epochs: int | None = None) -> dict[str, Path]:
    """Train the demo checkpoints that are missing (or unreadable); return name -> path."""
    spec = get_spec(DEMO_DATASET)
    paths: dict[str, Path] = {}
    baseline = None
    for name, method in DEMO_MODELS.items():
        path = checkpoint_path(folder / name)
        paths[name] = path
        if path.exists() and not force:
            try:
                ck = load_checkpoint(path)
                if name == "baseline":
                    baseline = ck
                continue
            except CheckpointError as exc:
                print(f"{path.name} cannot be read ({exc}); training it again", file=sys.stderr)
        cfg = TrainConfig(method=method, **({"epochs": epochs} if epochs else {}))
        print(f"training the demo {name} model on {DEMO_DATASET} ...", file=sys.stderr, flush=True)
        result = train(cfg, spec, teacher=baseline if get_objective(method).needs_teacher else None, progress=progress, name=name)
        save_checkpoint(result.model, result.meta, path)
        if name == "baseline":
            baseline = load_checkpoint(path)
    return paths


def metrics_table(paths: dict[str, Path]) -> str:
    tail = build_splits(get_spec(DEMO_DATASET)).smallest_classes(3)  # the 3 classes with the fewest training samples
    rows = [f"{'model':<10} {'val acc':>8} {'val F1':>8} {'test acc':>9} {'test F1':>8} {'tail-3 recall':>14}"]
    for name, path in paths.items():
        meta = load_checkpoint(path).meta
        v, t = meta.metrics["val"], meta.metrics["test"]
        tail_recall = sum(t["per_class_recall"][c] for c in tail) / 3
        rows.append(f"{name:<10} {v['accuracy']:>8.4f} {v['macro_f1']:>8.4f} {t['accuracy']:>9.4f} {t['macro_f1']:>8.4f} {tail_recall:>14.4f}")
    return "\n".join(rows)


def serve(port: int, folder: Path) -> int:
    app = ROOT / "app.py"
    if not app.exists():
        raise UserError("app.py is missing from this checkout")
    env = dict(os.environ, ASL_LENS_CHECKPOINTS=str(folder))
    print(f"ASL Lens: open http://localhost:{port} in a browser (Ctrl+C stops the app)", flush=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address", "localhost",
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    try:
        return subprocess.call(cmd, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="asl-lens demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, default=None, help="checkpoint folder (default: checkpoints/ or $ASL_LENS_CHECKPOINTS)")
    p.add_argument("--force", action="store_true", help="retrain even if the checkpoints exist")
    p.add_argument("--serve", action="store_true", help="start the app afterwards")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    folder = args.folder or get_settings().checkpoints_dir
    paths = ensure_demo_checkpoints(folder, force=args.force, progress=not args.quiet)
    print(f"demo checkpoints on {DEMO_DATASET} in {folder}:")
    print(metrics_table(paths))
    if args.serve:
        return serve(args.port, folder)
    return 0


@cli_entry
def app_main(argv: list[str] | None = None) -> int:
    """``asl-lens app``: serve the app on the library as it is (no training)."""
    p = argparse.ArgumentParser(prog="asl-lens app", description="Serve the ASL Lens app on localhost.")
    p.add_argument("--folder", type=Path, default=None, help="checkpoint folder (default: checkpoints/ or $ASL_LENS_CHECKPOINTS)")
    p.add_argument("--port", type=int, default=8501)
    args = p.parse_args(argv)
    return serve(args.port, args.folder or get_settings().checkpoints_dir)


if __name__ == "__main__":
    sys.exit(main())
