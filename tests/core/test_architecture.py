"""The import graph runs one way (ARCHITECTURE.md): each stage imports only the stages below it,
the library never imports streamlit or the app's ``ui``, and nothing in the engine imports training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "asl_core"

# stage -> rank; a module may import from its own stage or a lower-ranked one
RANKS = {
    "errors": 0, "settings": 1, "runtime": 2, "distributed": 3,
    "data": 3, "models": 4, "losses": 4, "objectives": 5, "checkpoint": 6,
    "engine": 7, "training": 8, "library": 8, "report": 9, "experiment": 10,
    "demo": 11, "cli": 12, "testkit": 12, "__main__": 13, "__init__": 0,
}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            # `from asl_core import x`: x is a stage, unless it is a package attribute (__version__)
            out.update(f"asl_core.{a.name}" for a in node.names if node.module == "asl_core" and not a.name.startswith("__"))
    return out


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


def test_every_stage_has_a_rank():
    assert {stage(m) for m, _ in modules()} <= set(RANKS)


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_run_one_way(module, path):
    own = stage(module)
    for imported in imports(path):
        root = imported.split(".")[0]
        assert root not in ("streamlit", "ui"), f"{module} imports {imported}: the library never imports the app"
        if root != "asl_core" or imported == "asl_core":
            continue
        other = stage(imported)
        if other == own or other == "__init__":
            continue
        assert RANKS[other] < RANKS[own], f"{module} ({own}) imports {imported} ({other}): the arrow runs back up"


def test_engine_never_imports_training():
    for module, path in modules():
        if stage(module) == "engine":
            assert not any(i.startswith(("asl_core.training", "asl_core.objectives")) for i in imports(path)), module
