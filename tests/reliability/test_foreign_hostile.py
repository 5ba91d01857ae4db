"""Issue 19: the new foreign readers refuse hostile files in one line, run nothing (a marker file
is never created) and change nothing: timm checkpoints whose args hold a code-running object,
.pt2 archives with a pickle in every member that could hold one (and graphs that would make
torch evaluate code), config.json naming an unknown architecture or absurd sizes, zip bombs and
path traversal. Hand-made cases plus Hypothesis mutations of a real .pt2 graph and config.json."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from asl_core import library
from asl_core.checkpoint import load_checkpoint
from asl_core.errors import UserError
from asl_core.testkit import foreign as F

from .conftest import tree_digest
from .test_fuzz import Probe, fuzz_settings

DATA = {"dataset": "digits-hard", "repeat_gray": True}


class RunsCommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pickle(marker: str) -> bytes:
    return pickle.dumps(RunsCommand(marker), protocol=2)


def _evil_torch(marker: str) -> bytes:
    buf = io.BytesIO()
    torch.save({"x": RunsCommand(marker)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign_sources")
    return {"timm": F.timm_train_checkpoint(d / "model_best.pth.tar", "test_efficientnet", ema=False),
            "hub": F.timm_hub_folder(d / "hub"), "pt2": F.export_archive(d / "custom.pt2")}


def _rezip(src: Path, replace: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> bytes:
    """A copy of the archive with members replaced (None: removed) or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
            else:
                zout.writestr(info, zin.read(info.filename))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return out.getvalue()


def _pt2_json(src: Path, member: str) -> dict:
    with zipfile.ZipFile(src) as z:
        return json.loads(z.read(next(n for n in z.namelist() if n.endswith(member))))


def _pt2_name(src: Path, member: str) -> str:
    with zipfile.ZipFile(src) as z:
        return next(n for n in z.namelist() if n.endswith(member))


def _timm_cases(src: Path, marker: str):
    obj = torch.load(src, weights_only=False)  # the test's own file
    for where in ("args.model_kwargs", "args.extra", "saver"):
        bad = dict(obj)
        if where == "saver":
            bad["saver"] = RunsCommand(marker)
        else:
            ns = argparse.Namespace(**vars(obj["args"]))
            if where == "args.model_kwargs":
                ns.model_kwargs = {"img_size": RunsCommand(marker)}
            else:
                ns.extra = RunsCommand(marker)
            bad["args"] = ns
        buf = io.BytesIO()
        torch.save(bad, buf)
        yield "timm checkpoint with a code-running object", where, "model_best.pth.tar", buf.getvalue()
    bad = dict(obj, args=argparse.Namespace(**dict(vars(obj["args"]), model_kwargs={"checkpoint_path": "/etc/passwd"})))
    buf = io.BytesIO()
    torch.save(bad, buf)
    yield "timm checkpoint with a code-running object", "model_kwargs outside the allow-list", "x.pth.tar", buf.getvalue()
    cat = "sizes that would exhaust memory (review of issue 19)"
    buf = io.BytesIO()
    torch.save(dict(obj, args=argparse.Namespace(**dict(vars(obj["args"]), num_classes=10**12))), buf)
    yield cat, "args.num_classes 10^12", "model_best.pth.tar", buf.getvalue()
    buf = io.BytesIO()
    torch.save(dict(obj, args=argparse.Namespace(**dict(vars(obj["args"]), num_classes=None)),
                    state_dict={**obj["state_dict"], "classifier.weight": torch.empty(10**7, 0)}), buf)
    yield cat, "a [10^7, 0] classifier (a 20 GB layer from a few bytes)", "model_best.pth.tar", buf.getvalue()
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(4 << 20)}, buf)  # 16 MiB of zeros, deflated to a few KiB below
    deflated = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, \
            zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    yield cat, "torch.save zip re-packed with deflate (1000x)", "weights.pt", deflated.getvalue()


def _pt2_cases(src: Path, marker: str):
    cat = ".pt2 archive with a pickle or code inside"
    weights_cfg = _pt2_name(src, "model_weights_config.json")
    weights = _pt2_json(src, "model_weights_config.json")
    first = next(iter(weights["config"]))
    member = _pt2_name(src, "data/weights/" + weights["config"][first]["path_name"])
    pickled = json.loads(json.dumps(weights))
    pickled["config"][first]["use_pickle"] = True
    yield cat, "weight marked use_pickle", "a.pt2", _rezip(src, {weights_cfg: json.dumps(pickled).encode(),
                                                                 member: _evil_torch(marker)})
    root = weights_cfg.split("/")[0]
    yield cat, "legacy pickled weights member", "b.pt2", _rezip(src, {}, {f"{root}/data/weights/model.pt": _evil_torch(marker)})
    constants = _pt2_name(src, "model_constants_config.json")
    for prefix in ("tensor_constant_0", "custom_obj_0", "opaque_obj_0"):
        cfg = {"config": {"c": {"path_name": prefix, "is_param": False, "use_pickle": True, "tensor_meta": None}}}
        yield cat, f"constant {prefix}", f"{prefix}.pt2", _rezip(
            src, {constants: json.dumps(cfg).encode()}, {f"{root}/data/constants/{prefix}": _evil_pickle(marker)})
    model = _pt2_name(src, "models/model.json")
    program = _pt2_json(src, "models/model.json")
    for label, edit in [
        ("sympy expression that imports os", lambda p: _set_expr(p, f"__import__('os').system('touch {marker}')")),
        ("operator torch.load", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.load")),
        ("operator builtins.exec", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="builtins.exec")),
        ("aten.from_file", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.ops.aten.from_file.default")),
        ("a name with code in it", lambda p: p["graph_module"]["graph"]["nodes"][0]["outputs"][0]["as_tensor"].update(
            name=f"x=__import__('os').system('touch {marker}')")),
        ("custom op", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="#evil.op")),
        # review of issue 19: sympy computing 9**9**9**9 exactly never ends; sparse COO + to_dense writes out of bounds
        ("shape expression 9**9**9**9", lambda p: _set_expr(p, "9**9**9**9")),
        ("shape expression Pow(9, Pow(9, 9))", lambda p: _set_expr(p, "Pow(9, Pow(9, 9))")),
        ("a 40-digit literal", lambda p: _set_expr(p, "9" * 40)),
        ("aten._sparse_coo_tensor_with_dims_and_tensors", lambda p: p["graph_module"]["graph"]["nodes"][0].update(
            target="torch.ops.aten._sparse_coo_tensor_with_dims_and_tensors.default")),
        ("aten._to_dense", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.ops.aten._to_dense.default")),
        ("aten.as_strided", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.ops.aten.as_strided.default")),
    ]:
        bad = json.loads(json.dumps(program))
        edit(bad)
        yield cat, label, "g.pt2", _rezip(src, {model: json.dumps(bad).encode()})
    yield "sizes that would exhaust memory (review of issue 19)", "zero-stride weight of 64 GiB", "s.pt2", _pt2_stride0(src)


def _pt2_stride0(src: Path) -> bytes:
    """The first weight declared [131072, 131072] over its own few bytes with zero strides: 64 GiB
    once copied, from an archive of a few KiB."""
    weights_cfg = _pt2_name(src, "model_weights_config.json")
    weights = _pt2_json(src, "model_weights_config.json")
    entry = weights["config"][next(iter(weights["config"]))]
    entry["tensor_meta"]["sizes"] = [{"as_int": 131072}, {"as_int": 131072}]
    entry["tensor_meta"]["strides"] = [{"as_int": 0}, {"as_int": 0}]
    entry["tensor_meta"]["storage_offset"] = {"as_int": 0}
    return _rezip(src, {weights_cfg: json.dumps(weights).encode()})


def _set_expr(program: dict, expr: str) -> None:
    def visit(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "expr_str":
                    x[k] = expr
                else:
                    visit(v)
        elif isinstance(x, list):
            for v in x:
                visit(v)

    visit(program)


def _hub_zip(config: dict | bytes, weights: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("hub/config.json", config if isinstance(config, bytes) else json.dumps(config))
        z.writestr("hub/model.safetensors", weights)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def _hub_cases(folder: Path, marker: str):
    cat = "config.json: unknown architecture or absurd sizes"
    cfg = json.loads((folder / "config.json").read_text())
    weights = (folder / "model.safetensors").read_bytes()
    for label, edit in [("unknown architecture", {"architecture": "no_such_net"}),
                        ("architecture with a path", {"architecture": "../../etc/passwd"}),
                        ("a billion classes", {"num_classes": 1_000_000_000}),
                        ("img_size 10^6", {"model_args": {"img_size": 1_000_000}}),
                        ("depth 10^4", {"model_args": {"depths": [10_000, 2, 2, 2]}}),
                        ("checkpoint_path argument", {"model_args": {"checkpoint_path": "/etc/passwd"}}),
                        ("not JSON", None)]:
        data = b"{not json" if edit is None else json.dumps({**cfg, **edit}).encode()
        yield cat, label, "hub.zip", _hub_zip(data, weights)
    yield cat, "pytorch_model.bin with a code-running object", "hub.zip", _bin_hub(cfg, _evil_torch(marker))
    buf = io.BytesIO()
    torch.save({"head.fc.weight": torch.zeros(4 << 20)}, buf)
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    yield ("sizes that would exhaust memory (review of issue 19)", "pytorch_model.bin deflated inside the hub zip",
           "hub.zip", _bin_hub(cfg, inner.getvalue()))
    cat = "zip bombs and path traversal"
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("hub/config.json", json.dumps(cfg))
        z.writestr("hub/model.safetensors", b"\0" * (64 << 20))  # 64 MiB of zeros: ~64 KiB compressed
    yield cat, "64 MiB of zeros in 64 KiB", "bomb.zip", bomb.getvalue()
    for name in ("../../escape/config.json", "/abs/config.json", "hub/../../x.bin"):
        yield cat, f"member {name}", "trav.zip", _hub_zip(cfg, weights, {name: b"{}"})
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(10_001):
            z.writestr(f"m{i}", b"")
    yield cat, "10,001 members", "many.zip", many.getvalue()


def _bin_hub(cfg: dict, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hub/config.json", json.dumps(cfg))
        z.writestr("hub/pytorch_model.bin", data)
    return out.getvalue()


@pytest.fixture
def world(tmp_path, good_checkpoints, monkeypatch):
    lib = tmp_path / "library"
    lib.mkdir()
    for path in good_checkpoints.values():
        (lib / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("ASL_LENS_CHECKPOINTS", str(lib))
    return lib, tmp_path / "pwned"


@pytest.mark.parametrize("family", ["timm", "pt2", "hub"])
def test_hostile_foreign_files(family, world, sources, tally, capsys, monkeypatch):
    lib, marker = world
    monkeypatch.setattr(library, "max_upload_bytes", lambda: 8 << 20)  # so the bomb case is over the limit by far
    make = {"timm": _timm_cases, "pt2": _pt2_cases, "hub": _hub_cases}[family]
    problems = []
    for category, label, filename, data in make(sources[family], str(marker)):
        before = tree_digest(lib)
        try:
            library.import_checkpoint(data, filename, lib, **DATA)
            outcome, message = "accepted", ""
        except UserError as exc:
            outcome, message = "refused", str(exc)
        except Exception as exc:  # noqa: BLE001 - counted
            outcome, message = "crash", f"{type(exc).__name__}: {exc}"
        lost = tree_digest(lib) != before
        ran = marker.exists()
        tally.add(category, "crash" if ran else outcome, lost, message)
        if outcome != "refused" or lost or ran or "\n" in message or len(message) > 300:
            problems.append(f"{label}: {outcome} lost={lost} ran={ran} {message[:200]!r}")
        path = lib.parent / "incoming" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        capsys.readouterr()
        rc = library.main(["--folder", str(lib), "import", str(path), "--dataset", "digits-hard", "--repeat-gray"])
        err = capsys.readouterr().err.strip().splitlines()
        if rc != 2 or len(err) != 1 or not err[0].startswith("error: ") or marker.exists() or tree_digest(lib) != before:
            problems.append(f"{label}: CLI rc={rc} stderr={err[:2]} ran={marker.exists()}")
    assert not problems, "\n".join(problems)


def test_pt2_sample_inputs_pickle_is_never_read(world, sources, tally):
    """The one pickle in every .pt2 (sample inputs) is not needed and never opened: a hostile one is
    ignored (the archive loads) and nothing runs."""
    lib, marker = world
    data = _rezip(sources["pt2"], {_pt2_name(sources["pt2"], "sample_inputs/model.pt"): _evil_torch(str(marker))})
    path = lib.parent / "s.pt2"
    path.write_bytes(data)
    program = _pt2_json(sources["pt2"], "models/model.json")
    program["guards_code"] = [f"__import__('os').system('touch {marker}')"]  # torch would exec this in .module()
    guarded = lib.parent / "g.pt2"
    guarded.write_bytes(_rezip(sources["pt2"], {_pt2_name(sources["pt2"], "models/model.json"): json.dumps(program).encode()}))
    for p in (path, guarded):
        ck = load_checkpoint(p)
        ck.model(torch.zeros(2, 1, 8, 8))
    assert not marker.exists()
    tally.facts[".pt2 sample inputs and guards code"] = ("a hostile sample_inputs pickle and guards_code that runs a "
                                                         "command: never read / dropped; the archive loads and nothing ran")


def test_fuzz_pt2_graph(sources, tally, tmp_path):
    """Mutated graph JSON: any value replaced by generated text, numbers or structures."""
    src = sources["pt2"]
    member = _pt2_name(src, "models/model.json")
    program = _pt2_json(src, "models/model.json")
    paths = []

    def collect(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                collect(v, path + (k,))
        elif isinstance(x, list):
            for i, v in enumerate(x[:3]):
                collect(v, path + (i,))
        paths.append(path)

    collect(program, ())
    marker = tmp_path / "pwned"
    probe = Probe(tally, ".pt2 graph JSON: generated values at any path (names, ops, shapes, expressions)")
    values = st.one_of(st.text(max_size=30), st.integers(-2**40, 2**40), st.none(), st.booleans(),
                       st.sampled_from([f"__import__('os').system('touch {marker}')", "torch.load", "builtins.eval",
                                        "Symbol('s0')*2", "s0 + 1", "torch.ops.aten.from_file.default", "#x.y", ""]),
                       st.lists(st.integers(0, 5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))

    @fuzz_settings(150)
    @given(st.lists(st.tuples(st.sampled_from(paths[:-1]), values), min_size=1, max_size=3))
    def check(edits):
        bad = json.loads(json.dumps(program))
        for path, value in edits:
            target = bad
            try:
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
        probe.run(load_checkpoint, probe.file(_rezip(src, {member: json.dumps(bad).encode()}), "case.pt2"))
        assert not marker.exists()

    check()


def test_fuzz_hub_config(sources, tally, tmp_path):
    cfg = json.loads((sources["hub"] / "config.json").read_text())
    weights = (sources["hub"] / "model.safetensors").read_bytes()
    probe = Probe(tally, "timm config.json: generated architecture, class count, model_args, pretrained_cfg")
    scalars = st.one_of(st.text(max_size=20), st.integers(-2**62, 2**62), st.floats(allow_nan=True), st.none(),
                        st.booleans(), st.lists(st.integers(-10, 10**7), max_size=4))

    @fuzz_settings(150)
    @given(st.sampled_from(["architecture", "num_classes", "model_args", "pretrained_cfg", "label_names"]),
           st.one_of(scalars, st.dictionaries(st.sampled_from(["img_size", "depths", "dims", "input_size", "mean", "std",
                                                                "crop_pct", "in_chans", "num_classes", "x"]), scalars,
                                               max_size=3)))
    def check(key, value):
        probe.run(load_checkpoint, probe.file(_hub_zip(json.dumps({**cfg, key: value}).encode(), weights), "case.zip"))

    check()
