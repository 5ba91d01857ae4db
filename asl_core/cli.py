"""``asl-lens``: the one command, with a subcommand per job.

    asl-lens train ...        train one model (baseline, asloss, clonal, kd, ...)
    asl-lens experiment ...   the paired comparison over seeds, with its validation search
    asl-lens analyze ...      compare 1-3 checkpoints into one self-contained HTML report
    asl-lens extract ...      a checkpoint's layer features on a split, into the disk cache
    asl-lens library ...      list, import, check or delete checkpoints in the library folder
    asl-lens demo ...         train the demo checkpoints if missing and print their metrics
    asl-lens app ...          serve the app (Streamlit) on the library

``asl-lens COMMAND --help`` lists a command's flags. Subcommand modules are imported only
when used, so ``asl-lens --help`` is instant.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("asl_core.training.cli", "train one model and save its checkpoint"),
    "experiment": ("asl_core.experiment.run", "compare the methods over paired seeds (with --search: tune on validation)"),
    "analyze": ("asl_core.report.analyze", "compare 1-3 checkpoints: one HTML report, optional feature export"),
    "extract": ("asl_core.engine.extract", "extract a checkpoint's layer features on a split into the disk cache"),
    "library": ("asl_core.library", "list, import, check or delete checkpoints in the library folder"),
    "demo": ("asl_core.demo", "train the demo checkpoints if missing; --serve starts the app"),
    "app": ("asl_core.demo", "serve the app on the library (no training)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: asl-lens COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "asl-lens COMMAND --help lists a command's flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if command == "app":
        return module.app_main(rest)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
