"""Every hostile or broken input is refused with a clear message, by the library and the CLI,
runs nothing, and leaves the checkpoint library and the cache byte-for-byte unchanged."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from asl_core import library
from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import DatasetSpec, build_splits
from asl_core.errors import UserError

from .conftest import tree_digest
from .corpus import checkpoint_cases

CATEGORIES = [
    "random bytes", "truncated safetensors", "bit-flipped safetensors", "bad metadata", "code-running pickle",
    "ill-fitting state dict", "NaN/Inf weights", "wrong file type",
]


@pytest.fixture
def world(tmp_path, good_checkpoints, monkeypatch):
    """A library with two good checkpoints and a cache folder with an entry in it."""
    lib = tmp_path / "library"
    lib.mkdir()
    for path in good_checkpoints.values():
        (lib / path.name).write_bytes(path.read_bytes())
    cache = tmp_path / "cache"
    (cache / "features").mkdir(parents=True)
    (cache / "features" / "entry.npz").write_bytes(b"cached bytes")
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(lib))
    monkeypatch.setenv("ASL_LENS_CACHE", str(cache))
    return lib, cache, tmp_path / "pwned"


@lru_cache(maxsize=1)
def _corpus(good_path: str, marker: str):
    good = Path(good_path).read_bytes()
    state = load_checkpoint(good_path).model.state_dict()
    return list(checkpoint_cases(good, state, marker))


def attempt(fn, tally, category, digest_before, folders, marker=None):
    """Run one attempt and record how it ended. Returns (outcome, message)."""
    try:
        fn()
        outcome, message = "accepted", ""
    except UserError as exc:
        outcome, message = "refused", str(exc)
    except Exception as exc:  # noqa: BLE001 - a crash is what is being counted
        outcome, message = "crash", f"{type(exc).__name__}: {exc}"
    lost = tree_digest(*folders) != digest_before
    ran_code = marker is not None and Path(marker).exists()
    tally.add(category, "crash" if ran_code else outcome, lost, message)
    return outcome, message, lost, ran_code


@pytest.mark.parametrize("category", CATEGORIES)
def test_hostile_checkpoint_files(category, world, good_checkpoints, tally, capsys):
    lib, cache, marker = world
    cases = [c for c in _corpus(str(good_checkpoints["baseline"]), str(marker)) if c[0] == category]
    assert cases, category
    problems = []
    for _, label, filename, data, kwargs in cases:
        sys.modules.pop("antigravity", None)
        before = tree_digest(lib, cache)
        # 1. the library, as the app's upload calls it
        outcome, message, lost, ran = attempt(
            lambda: library.import_checkpoint(data, filename, lib, **kwargs), tally, category, before, (lib, cache), marker)
        if outcome != "refused" or lost or ran or "antigravity" in sys.modules:
            problems.append(f"{label}: {outcome} lost={lost} ran_code={ran} {message[:120]}")
        if outcome == "refused" and ("\n" in message or len(message) > 400):
            problems.append(f"{label}: message is not one line: {message[:200]!r}")
        # 2. the CLI: exit 2 and exactly one line on stderr
        path = lib.parent / "incoming" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        argv = ["--folder", str(lib), "import", str(path)]
        if "arch" in kwargs:
            argv += ["--arch", kwargs["arch"], "--num-classes", str(kwargs["num_classes"])]
        capsys.readouterr()
        rc = library.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        if rc != 2 or len(err) != 1 or not err[0].startswith("error: "):
            problems.append(f"{label}: CLI rc={rc} stderr={err[:3]}")
        if marker.exists() or tree_digest(lib, cache) != before:
            problems.append(f"{label}: the CLI changed the library/cache or ran code")
    assert not problems, "\n".join(problems)


def test_nan_weights_in_our_own_format(world, good_checkpoints, tally):
    lib, cache, _ = world
    ck = load_checkpoint(good_checkpoints["asloss"])
    state = {k: v.clone() for k, v in ck.model.state_dict().items()}
    for value in (float("nan"), float("inf")):
        state["embedding.1.weight"][0, 0] = value
        bad = save_checkpoint(state, ck.meta, lib.parent / "nan")  # a valid file with a correct hash
        before = tree_digest(lib, cache)
        outcome, message, lost, _ = attempt(lambda: library.import_checkpoint(bad, bad.name, lib), tally,
                                            "NaN/Inf weights", before, (lib, cache))
        assert outcome == "refused" and "NaN or Inf" in message and not lost


def test_file_over_the_upload_limit(world, good_checkpoints, tally, monkeypatch):
    lib, cache, _ = world
    monkeypatch.setenv("ASL_LENS_MAX_UPLOAD_MB", "0.05")
    data = good_checkpoints["baseline"].read_bytes()
    assert len(data) > 0.05 * 2**20
    before = tree_digest(lib, cache)
    outcome, message, lost, _ = attempt(lambda: library.import_checkpoint(data, "big.safetensors", lib), tally,
                                        "over the size limit", before, (lib, cache))
    assert outcome == "refused" and "upload limit" in message and not lost
    outcome, message, lost, _ = attempt(lambda: library.import_checkpoint(good_checkpoints["baseline"], "big.safetensors", lib),
                                        tally, "over the size limit", before, (lib, cache))
    assert outcome == "refused" and "limit" in message and not lost


HOSTILE_NAMES = ["../escape.safetensors", "../../etc/passwd.safetensors", "/tmp/abs.safetensors", "a\x00b.safetensors",
                 "new\nline.safetensors", "\x1b[31mred.safetensors", "..safetensors", "CON.safetensors",
                 "baseline.safetensors", "BASELINE.safetensors", "名前.safetensors", " spaced out .safetensors"]


@pytest.mark.parametrize("raw", HOSTILE_NAMES)
def test_hostile_file_names_stay_inside_and_never_overwrite(raw, world, good_checkpoints, tally):
    lib, cache, _ = world
    data = good_checkpoints["baseline"].read_bytes()
    before = tree_digest(lib, cache)
    existing = set(before)
    try:
        result = library.import_checkpoint(data, raw, lib, allow_duplicate=True)  # the names are under test here
        outcome, message = "refused" if result.path.parent == lib else "crash", f"saved as {result.path.name}"
        assert result.path.parent.resolve() == lib.resolve()
        assert result.path.name.isascii() and all(c.isalnum() or c in "._-" for c in result.path.name)
    except UserError as exc:
        outcome, message, result = "refused", str(exc), None
    after = tree_digest(lib, cache)
    # every file that was there is unchanged; at most one new file, inside the library
    lost = any(after.get(k) != v for k, v in before.items())
    tally.add("hostile or taken file names", outcome, lost, message)
    assert not lost and outcome == "refused"
    assert len(set(after) - existing) <= 1
    assert not list(Path("/tmp").glob("abs.safetensors*")) or raw != "/tmp/abs.safetensors"


def _write_images(folder: Path, classes, n=6, ext=".png", valid=True):
    from PIL import Image

    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = folder / c / f"{i}{ext}"
            if valid:
                Image.fromarray((np.random.default_rng(i).random((9, 9)) * 255).astype(np.uint8)).save(p)
            else:
                p.write_bytes(b"not an image at all")


FOLDERS = {
    "missing folder": lambda root: None,
    "empty folder": lambda root: root.mkdir(),
    "one class": lambda root: _write_images(root, ["only"]),
    "only non-image files": lambda root: [(root / c).mkdir(parents=True) or (root / c / "x.txt").write_text("hi") for c in "ab"],
    "corrupt image files": lambda root: _write_images(root, ["a", "b"], valid=False),
    "a file, not a folder": lambda root: root.write_text("file"),
    "too few images per class": lambda root: _write_images(root, ["a", "b"], n=2),
}


@pytest.mark.parametrize("label", list(FOLDERS))
def test_broken_image_folders(label, tmp_path, tally, world):
    lib, cache, _ = world
    root = tmp_path / "images"
    FOLDERS[label](root)
    before = tree_digest(lib, cache)
    outcome, message, lost, _ = attempt(
        lambda: build_splits(DatasetSpec(source="folder", root=str(root), val_per_class=2, test_per_class=2)),
        tally, "broken image folders", before, (lib, cache))
    assert outcome == "refused" and not lost, message
    from asl_core.training.cli import main

    rc = main(["--dataset", "folder", "--data-root", str(root), "--val-per-class", "2", "--test-per-class", "2",
               "--epochs", "1", "--quiet", "--out", str(lib / "never")])
    assert rc == 2 and not (lib / "never.safetensors").exists()


@pytest.mark.parametrize("layers", ["nope", "embedding,nope", "fc.weight", "", "block9:1"])
def test_unknown_layer_names(layers, world, tally, capsys):
    lib, cache, _ = world
    from asl_core.training.cli import main

    before = tree_digest(lib, cache)
    args = ["--method", "asloss", "--layers", layers or ",", "--samples-per-class", "6", "--val-per-class", "2",
            "--test-per-class", "2", "--epochs", "1", "--quiet", "--out", str(lib / "never")]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    outcome = "refused" if rc == 2 and len(err) == 1 else ("accepted" if rc == 0 else "crash")
    if layers == "":  # an empty list means "the default layer": a valid request
        assert rc == 0
        (lib / "never.safetensors").unlink()
        return
    tally.add("unknown layer names", outcome, tree_digest(lib, cache) != before, err[0] if err else "")
    assert outcome == "refused" and "valid layers" in err[0]
