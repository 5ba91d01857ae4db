"""Property-based fuzzing (Hypothesis) of every parser of untrusted input.

Targets: the safetensors header and our metadata in it, foreign state dicts through
``torch.load(weights_only=True)`` (generated structures and mutated bytes), truncation of a
checkpoint at every byte of its header, uploaded file names, and image-dataset folders.

The property is the same everywhere: an input is either loaded (it was valid) or refused with
a :class:`UserError`; any other exception is a crash and fails the test (Hypothesis shrinks it
to a small case, which then joins the ``*_REGRESSIONS`` below as a fixed ``@example``). Runs are
derandomised (the same cases every run) with no example database, so CI is reproducible;
``ASL_LENS_FUZZ_SCALE=10`` runs ten times as many. Memory stays bounded when a header claims
gigabytes: checked in a separate process by its peak RSS.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asl_core import library
from asl_core.checkpoint import META_KEY, CheckpointMeta, load_checkpoint, read_metadata, serialize
from asl_core.data import DatasetSpec, build_splits
from asl_core.errors import NotOurCheckpointError, UserError
from asl_core.models.architectures import build_model

from .conftest import tree_digest

ROOT = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("ASL_LENS_FUZZ_SCALE", "1"))


@pytest.fixture(scope="module", autouse=True)
def _record_regressions(tally):
    found = [*RAW_METADATA_REGRESSIONS, *METADATA_REGRESSIONS, *TORCH_REGRESSIONS]
    tally.facts["fuzz regressions"] = (f"Failures found by the fuzzer, fixed, and kept as regression cases ({len(found)}): "
                                       + "; ".join(found) + ".")
    yield


def fuzz_settings(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# Failures the fuzzer found, kept as fixed cases (each is also an @example of its test).
class _Edits:
    """A fixed list of byte edits in place of Hypothesis' ``st.data()`` (for regressions)."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def draw(self, strategy):
        return self.draws.pop(0)


# description -> the case, as Hypothesis shrank it (or as small as we could make it by hand)
RAW_METADATA_REGRESSIONS = {
    "metadata nested 100,000 deep: json.loads raised RecursionError": "[" * 100_000 + "]" * 100_000,
}
METADATA_REGRESSIONS = {  # fields replaced in a valid checkpoint's metadata
    'metadata "arch": [] : validate() raised TypeError (unhashable list)': {"arch": []},
    'metadata "metrics": {"test": "x"} : readers of the metrics expected an object': {"metrics": {"test": "x"}},
}
TORCH_REGRESSIONS = {  # (zip format?, the byte edits)
    "legacy torch file with bit 0 of byte 1220 flipped: torch raised AssertionError": (False, (1, "flip", 1220, 0)),
}
N_REGRESSIONS = len(RAW_METADATA_REGRESSIONS) + len(METADATA_REGRESSIONS) + len(TORCH_REGRESSIONS)


# --------------------------------------------------------------------------- shared helpers


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = build_model("digits_cnn_small", 10, in_channels=1, small_input=True)
    meta = CheckpointMeta(arch="digits_cnn_small", num_classes=10, class_names=[str(i) for i in range(10)],
                          input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,), small_input=True, method="baseline",
                          name="fuzz")
    data, meta = serialize(model, meta)
    return model, meta, data


class Probe:
    """Writes each case to one temporary file and runs the parser on it, counting outcomes."""

    def __init__(self, tally, target: str):
        self.tally, self.target = tally, target
        self.dir = Path(tempfile.mkdtemp(prefix="asl-fuzz-"))

    def run(self, fn, *args, **kwargs) -> str:
        try:
            with warnings.catch_warnings():  # torch warns about odd pickle protocols in mutated files
                warnings.simplefilter("ignore")
                fn(*args, **kwargs)
            outcome = "loaded"
        except UserError:
            outcome = "refused"
        except Exception:
            self.tally.fuzz_add(self.target, "crash")
            raise
        self.tally.fuzz_add(self.target, outcome)
        return outcome

    def file(self, data: bytes, name: str = "case.safetensors") -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path


def _load_any(path: Path) -> None:
    """What the upload does with a file: ours, else foreign weights for a known architecture."""
    try:
        load_checkpoint(path)
    except NotOurCheckpointError:
        load_checkpoint(path, arch="digits_cnn_small", num_classes=10)


def _parse_header(path: Path) -> None:
    read_metadata(path)


# --------------------------------------------------------------------------- safetensors header

DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "C64", "X9", "", "f32"]
HUGE = [2**31, 2**32 - 1, 2**40, 2**53, 2**62, 2**63 - 1, 2**64 - 1]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)
tensor_entry = st.fixed_dictionaries({
    "dtype": st.sampled_from(DTYPES),
    "shape": st.lists(st.one_of(st.integers(-2, 64), st.sampled_from(HUGE)), max_size=4),
    "data_offsets": st.lists(st.one_of(st.integers(-2, 512), st.sampled_from(HUGE)), min_size=0, max_size=3),
})
header = st.dictionaries(
    st.one_of(st.text(max_size=12), st.just("__metadata__")),
    st.one_of(tensor_entry, json_value, st.dictionaries(st.sampled_from([META_KEY, "format"]),
                                                        st.one_of(st.text(max_size=40), json_value), max_size=2)),
    max_size=4)


@st.composite
def safetensors_files(draw) -> bytes:
    head = json.dumps(draw(header)).encode()
    claim = draw(st.one_of(st.just(len(head)), st.integers(0, 2**16), st.sampled_from(HUGE + [len(head) + 1, len(head) - 1])))
    body = draw(st.binary(max_size=300))
    return struct.pack("<Q", claim % 2**64) + head + body


def test_fuzz_safetensors_header(tally):
    probe = Probe(tally, "safetensors header: generated JSON, dtypes, shapes, offsets, length claims")

    @fuzz_settings(800)
    @given(safetensors_files())
    def check(data: bytes) -> None:
        path = probe.file(data)
        probe.run(_parse_header, path)
        probe.run(_load_any, path)

    check()


# --------------------------------------------------------------------------- our metadata


def _mutate_meta(base: dict, draw) -> dict:
    meta = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base) + ["extra"]), max_size=4, unique=True)):
        if draw(st.booleans()):
            meta.pop(key, None)
        else:
            meta[key] = draw(json_value)
    return meta


@st.composite
def metadata_texts(draw, base: dict) -> str:
    kind = draw(st.sampled_from(["mutated", "mutated", "raw text", "nested"]))
    if kind == "mutated":
        return json.dumps(_mutate_meta(base, draw))
    if kind == "nested":
        depth = draw(st.integers(1, 50_000))
        return "[" * depth + "]" * depth
    return draw(st.text(max_size=200))


def test_fuzz_checkpoint_metadata(small_model, tally):
    from safetensors.torch import save

    model, meta, _ = small_model
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    base = meta.to_dict()
    probe = Probe(tally, "our metadata: mutated fields, raw text, deep nesting")

    @fuzz_settings(400)
    @given(metadata_texts(base))
    def check(text: str) -> None:
        path = probe.file(save(tensors, metadata={META_KEY: text, "format": "pt"}))
        probe.run(_load_any, path)

    for text in RAW_METADATA_REGRESSIONS.values():
        check = example(text)(check)
    for fields in METADATA_REGRESSIONS.values():
        check = example(json.dumps({**base, **fields}))(check)
    check()


# --------------------------------------------------------------------------- truncation at every byte


def test_truncation_at_every_byte_of_the_header(small_model, tally):
    """Every prefix of a real checkpoint up to the end of its header, then every 997th byte of
    the weights: none loads, each is refused with a message."""
    _, _, data = small_model
    (header_len,) = struct.unpack("<Q", data[:8])
    cuts = list(range(0, 8 + header_len + 1)) + list(range(8 + header_len + 1, len(data), 997))
    probe = Probe(tally, f"truncation: every byte of a checkpoint's {8 + header_len}-byte header, every 997th after")
    for cut in cuts:
        path = probe.file(data[:cut])
        assert probe.run(_load_any, path) == "refused", cut
    assert probe.run(_load_any, probe.file(data)) == "loaded"


# --------------------------------------------------------------------------- foreign state dicts (torch.load)

TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.uint8,
                torch.bool, torch.complex64]


@st.composite
def tensors(draw, shape=None) -> torch.Tensor:
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    shape = shape if shape is not None else tuple(draw(st.lists(st.integers(0, 6), max_size=4)))
    t = torch.zeros(shape, dtype=dtype)
    if t.numel() and draw(st.booleans()):
        fill = draw(st.sampled_from([1.0, -1.0, float("nan"), float("inf"), 1e30]))
        t = t.to(torch.float32).fill_(fill).to(dtype) if dtype.is_floating_point else t
    return t


@st.composite
def state_dicts(draw, real: dict) -> object:
    """Structures ``torch.save`` can write and ``weights_only`` can read: the model's own keys
    with wrong shapes or dtypes, random keys, nesting, and non-tensor values."""
    kind = draw(st.sampled_from(["real keys", "random keys", "nested", "not a dict"]))
    if kind == "real keys":
        sd = {}
        for k, v in real.items():
            choice = draw(st.sampled_from(["keep", "keep", "keep", "drop", "shape", "dtype"]))
            if choice == "keep":
                sd[k] = v.clone()
            elif choice == "shape":
                sd[k] = draw(tensors())
            elif choice == "dtype":
                sd[k] = v.clone().to(draw(st.sampled_from(TORCH_DTYPES)))
        prefix = draw(st.sampled_from(["", "model.", "module.", "net."]))
        sd = {prefix + k: v for k, v in sd.items()}
    else:
        sd = draw(st.dictionaries(st.text(max_size=20), tensors(), max_size=5))
    if kind == "nested":
        wrapper = draw(st.sampled_from(["state_dict", "model", "weights", "net"]))
        sd = {wrapper: sd, "epoch": draw(st.integers()), "note": draw(st.text(max_size=10))}
    if kind == "not a dict":
        sd = draw(st.one_of(st.lists(tensors(), max_size=3), st.integers(), st.text(max_size=10), st.none(),
                            st.tuples(tensors(), st.floats())))
    return sd


def test_fuzz_foreign_state_dicts(small_model, tally):
    model, _, _ = small_model
    real = model.state_dict()
    probe = Probe(tally, "foreign state dicts via torch.load(weights_only=True): generated structures")

    @fuzz_settings(300)
    @given(state_dicts(real), st.booleans())
    def check(obj, zip_format: bool) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
        probe.run(_load_any, probe.file(buf.getvalue(), "case.pt"))

    check()


def test_fuzz_mutated_torch_files(small_model, tally):
    model, _, _ = small_model
    files = {}
    for zip_format in (True, False):
        buf = io.BytesIO()
        torch.save({"state_dict": model.state_dict()}, buf, _use_new_zipfile_serialization=zip_format)
        files[zip_format] = buf.getvalue()
    probe = Probe(tally, "torch files: bit flips, overwritten spans, truncation, insertions")

    @fuzz_settings(400)
    @given(st.booleans(), st.data())
    def check(zip_format: bool, data) -> None:
        raw = bytearray(files[zip_format])
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(["flip", "span", "truncate", "insert"]))
            at = data.draw(st.integers(0, max(0, len(raw) - 1)))
            if op == "flip" and raw:
                raw[at] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "span":
                chunk = data.draw(st.binary(min_size=1, max_size=16))
                raw[at:at + len(chunk)] = chunk
            elif op == "truncate":
                del raw[at:]
            else:
                raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        probe.run(_load_any, probe.file(bytes(raw), "case.pt"))

    for zip_format, edits in TORCH_REGRESSIONS.values():
        check = example(zip_format, _Edits(*edits))(check)
    check()


# --------------------------------------------------------------------------- uploaded file names

names = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(list("./\\_-~ \x00\n:*?<>|AZaz09") + ["..", "../", "名", "\u202e", "\ufeff", "CON"]),
             max_size=20).map("".join),
    st.builds(lambda a, b: a + b, st.text(max_size=30), st.sampled_from([".safetensors", ".pt", ".PTH", ".ckpt", ".bin", ""])),
)


def test_fuzz_file_names(tmp_path, tally):
    from asl_core.checkpoint import CHECKPOINT_SUFFIX

    folder = tmp_path / "lib"
    folder.mkdir()
    probe = Probe(tally, "uploaded file names (sanitised, resolved inside the library)")

    @fuzz_settings(2000)
    @given(names)
    def check(raw: str) -> None:
        def sanitise() -> None:
            name = library.safe_name(raw)
            assert name and len(name) <= 80 and name.isascii() and not name.startswith(".")
            assert all(c.isalnum() or c in "._-" for c in name), name
            assert (folder / f"{name}{CHECKPOINT_SUFFIX}").resolve().parent == folder.resolve()

        probe.run(sanitise)

    check()


def test_fuzz_file_names_through_import(tmp_path, small_model, tally):
    """Fewer cases (each writes a checkpoint): names never escape, never overwrite."""
    _, _, data = small_model
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "fuzz.safetensors").write_bytes(data)
    probe = Probe(tally, "uploaded file names through the real import (writes)")

    @fuzz_settings(150)
    @given(names)
    def check(raw: str) -> None:
        before = tree_digest(folder)

        def upload() -> None:
            result = library.import_checkpoint(data, raw if raw.endswith(library.ACCEPTED_SUFFIXES) else raw + ".safetensors",
                                               folder, allow_duplicate=True)  # the names are under test
            assert result.path.parent == folder and result.path.exists()

        probe.run(upload)
        after = tree_digest(folder)
        lost = any(after.get(k) != v for k, v in before.items())
        tally.fuzz_add(probe.target, "lost" if lost else None)
        assert not lost and len(set(after) - set(before)) <= 1
        for p in set(after) - set(before):  # keep the folder small: later names do not collide forever
            Path(p).unlink()

    check()


# --------------------------------------------------------------------------- dataset folders


@st.composite
def folder_trees(draw) -> list[tuple[str, str, str]]:
    """(class folder, file name, content kind) triples."""
    classes = draw(st.lists(st.one_of(st.text(alphabet="abc.-_ 名", min_size=1, max_size=6), st.just(".hidden")),
                            min_size=0, max_size=4, unique=True))
    files = []
    for c in classes:
        for _ in range(draw(st.integers(0, 5))):
            files.append((c, draw(st.text(alphabet="xyz", min_size=1, max_size=4)) + draw(
                st.sampled_from([".png", ".jpg", ".PNG", ".txt", "", ".bmp"])),
                draw(st.sampled_from(["png", "png", "gray", "rgba", "garbage", "empty", "truncated", "bomb", "dir"]))))
    return files


def _write_file(path: Path, kind: str) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(path.name))
    if kind == "dir":
        path.mkdir(parents=True, exist_ok=True)
        return
    if kind in ("png", "gray", "rgba", "truncated"):
        mode = {"png": "RGB", "gray": "L", "rgba": "RGBA", "truncated": "RGB"}[kind]
        arr = (rng.random((7, 9, 4)) * 255).astype(np.uint8)
        img = Image.fromarray(arr[..., :3] if mode == "RGB" else arr[..., 0] if mode == "L" else arr)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data)
    elif kind == "bomb":  # a PNG header that claims 100,000 x 100,000 pixels
        import zlib

        def chunk(tag, body):
            return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    elif kind == "garbage":
        path.write_bytes(rng.bytes(64))
    else:
        path.write_bytes(b"")


def test_fuzz_dataset_folders(tmp_path, tally):
    probe = Probe(tally, "image-dataset folders: names, formats, broken/huge images")
    counter = {"n": 0}

    @fuzz_settings(200)
    @given(folder_trees())
    def check(tree) -> None:
        counter["n"] += 1
        root = tmp_path / f"ds{counter['n']}"
        root.mkdir()
        for c, name, kind in tree:
            (root / c).mkdir(parents=True, exist_ok=True)
            if not (root / c / name).exists():  # a generated name may repeat within a class
                _write_file(root / c / name, kind)
        probe.run(lambda: build_splits(DatasetSpec(source="folder", root=str(root), image_size=8, val_per_class=1,
                                                   test_per_class=1)))

    check()


# --------------------------------------------------------------------------- memory under claims of gigabytes


def test_memory_stays_bounded_when_headers_claim_gigabytes(tally):
    """In a fresh process (its peak RSS, VmHWM, reset after warm-up): safetensors length fields and
    tensor shapes claiming up to 2^64 bytes, legacy torch storages claiming 2^31..2^62
    elements, a PNG claiming 10^10 pixels. Every one is refused; the peak RSS grows by less
    than 64 MiB over the process's own warm-up."""
    script = textwrap.dedent(r"""
        import io, json, struct, sys, tempfile, zlib
        from pathlib import Path
        import torch
        from asl_core.checkpoint import load_checkpoint
        from asl_core.data import DatasetSpec, build_splits
        from asl_core.errors import UserError

        tmp = Path(tempfile.mkdtemp())
        def rss():  # this process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)
            line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
            return int(line.split()[1]) / 1024
        def attempt(data, name="x.safetensors", arch=True):
            p = tmp / name; p.write_bytes(data)
            try:
                load_checkpoint(p, arch="digits_cnn_small", num_classes=10) if arch else load_checkpoint(p)
            except UserError:
                return "refused"
            return "loaded"
        # warm-up: one of each kind of load, so lazy imports and allocator pools count as baseline
        buf = io.BytesIO(); torch.save({"w": torch.ones(4)}, buf); attempt(buf.getvalue(), "w.pt")
        attempt(struct.pack("<Q", 2) + b"{}")
        try:  # reset the peak to the current RSS, so that only what follows can raise it
            open("/proc/self/clear_refs", "w").write("5")
        except OSError:
            pass
        base = rss(); results = []
        for claim in [2**30, 2**32, 2**40, 2**63 - 1, 2**64 - 1]:
            results.append(attempt(struct.pack("<Q", claim) + b'{"a":1}'))
        for dims in ([2**20, 2**20], [2**31, 4], [2**62]):
            head = json.dumps({"fc.weight": {"dtype": "F32", "shape": dims, "data_offsets": [0, 4 * dims[0] % 2**64]}}).encode()
            results.append(attempt(struct.pack("<Q", len(head)) + head + b"\0" * 64))
        legacy = io.BytesIO(); torch.save({"w": torch.ones(4)}, legacy, _use_new_zipfile_serialization=False)
        raw = legacy.getvalue()
        for claim in [2**31, 2**36, 2**40, 2**62]:
            results.append(attempt(raw[:-24] + struct.pack("<q", claim) + raw[-16:], "l.pt"))
        def chunk(tag, body): return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
        (tmp / "ds" / "a").mkdir(parents=True); (tmp / "ds" / "b").mkdir()
        bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")
        for c in "ab":
            for i in range(3): (tmp / "ds" / c / f"{i}.png").write_bytes(bomb)
        try:
            build_splits(DatasetSpec(source="folder", root=str(tmp / "ds"), image_size=8, val_per_class=1, test_per_class=1))
            results.append("loaded")
        except UserError:
            results.append("refused")
        print(json.dumps({"results": results, "growth_mib": rss() - base, "base_mib": base}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in out["results"]:
        tally.fuzz_add("headers claiming gigabytes (separate process, peak RSS measured)", r if r == "refused" else "crash")
    assert all(r == "refused" for r in out["results"]), out
    assert out["growth_mib"] < 64, out
    tally.facts["peak memory while refusing headers that claim up to 2^64 bytes"] = (
        f"{len(out['results'])} claims refused; peak RSS grew {out['growth_mib']:.1f} MiB over a "
        f"{out['base_mib']:.0f} MiB warmed-up process (bound: 64 MiB)")
