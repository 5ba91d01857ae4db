"""``.pt2`` archives written by ``torch.export.save``, read without unpickling and without
running any code from the file.

``torch.export.load`` is not safe for an untrusted file: it unpickles members with
``weights_only=False`` (weights marked ``use_pickle``, tensor constants, ``custom_obj_*`` and
``opaque_obj_*`` members, and the sample inputs after a failed safe attempt), hands symbolic
shape strings to ``sympy.sympify`` (which evaluates them), and ``ExportedProgram.module()``
``exec``s the archive's ``guards_code``. So this reader takes the archive apart itself:

* the graph from ``models/<name>.json`` (the serialized ``ExportedProgram``, plain JSON), checked
  before torch's deserializer sees it: every op is an ATen operator or a plain ``_operator``
  function; every name is an identifier; symbolic-shape expressions are arithmetic over shape
  symbols only; no sub-graphs, custom objects or opaque objects; ``guards_code`` is dropped
  and node metadata is cut down to the module hierarchy;
* the weights from their raw members through ``model_weights_config.json`` (dtype, sizes,
  strides checked against the member's length); a member marked ``use_pickle``, the legacy
  pickled ``weights/<name>.pt``, and any pickled constant are refused;
* ``sample_inputs`` (a pickle) is never read.

torch's own ``ExportedProgramDeserializer`` then rebuilds the program from the checked JSON and
the already-loaded tensors (no bytes reach ``torch.load``), and ``torch.export.unflatten`` gives
back the module hierarchy, so layers keep the user's names (``stem``, ``neck.1``, ``head``)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import torch
from torch import nn

from asl_core.checkpoint.files import SafeZip
from asl_core.errors import CheckpointError

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FQN = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$|^$")
TYPE_NAME = re.compile(r"^[A-Za-z0-9_.<>]*$")
SYMBOL = re.compile(r"^[su]\d+$")
MEMBER = re.compile(r"^[A-Za-z0-9_]+$")
EXPR_CHARS = re.compile(r"^[A-Za-z0-9_ +\-*/(),%<>=!]*$")
# sympy functions torch's deserializer maps by name (torch.utils._sympy.functions) and sympy's own
EXPR_FUNCS = {"FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
              "CeilDiv", "Max", "Min", "Abs", "TruncToInt", "IntTrueDiv", "ToFloat", "Integer", "Add", "Mul", "Rational"}
# no powers (``**``, Pow, PowByNatural): sympy evaluates 9**9**9**9 exactly, and never ends
MAX_LITERAL_DIGITS = 12
# sympy's srepr of a shape symbol, as torch writes it: Symbol('s77', positive=True, integer=True)
SREPR_SYMBOL = re.compile(r"Symbol\('([su]\d+)'(?:, (?:positive|integer|nonnegative|real)=(?:True|False))*\)")
OPERATORS = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "neg", "mod", "pow", "eq", "ne", "lt", "le", "gt",
             "ge", "and_", "or_"}
DENIED_ATEN = {"from_file", "_print", "save"}  # reach the file system or the console
# operators that build tensors from caller-supplied indices, sizes or strides without checking them
# (a sparse COO tensor made dense writes out of bounds), or that alter storage in place
DENIED_ATEN_PARTS = ("sparse", "to_dense", "as_strided", "unsafe_index", "unsafe_masked", "set_", "resize", "nested", "storage", "mkldnn",
                     "_local_scalar", "from_blob", "quantize", "_efficientzerotensor", "_indices", "_values")
PRETTY_TYPES = {None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict"}
KEPT_METADATA = ("nn_module_stack",)
MAX_GRAPH_BYTES = 64 << 20


def refuse(why: str) -> CheckpointError:
    return CheckpointError(f"refused .pt2 archive: {why}")


# ---------------------------------------------------------------------------- the graph


def _check_target(target: Any) -> None:
    if not isinstance(target, str):
        raise refuse("a node without an operator name")
    if target.startswith("torch.ops.aten."):
        parts = target.split(".")
        if (len(parts) != 5 or not all(IDENT.match(p) for p in parts[3:]) or parts[3] in DENIED_ATEN
                or any(bad in parts[3] for bad in DENIED_ATEN_PARTS)):
            raise refuse(f"operator {target[:80]!r} is not allowed")
        packet = getattr(torch.ops.aten, parts[3], None) if hasattr(torch.ops.aten, parts[3]) else None
        if packet is None or not isinstance(getattr(packet, parts[4], None), torch._ops.OpOverload):
            raise refuse(f"unknown ATen operator {target[:80]!r}")
        return
    if target.startswith("_operator.") and target.split(".", 1)[1] in OPERATORS:
        return
    raise refuse(f"operator {target[:80]!r} is not an ATen operator (custom ops and Python callables are not run)")


def _check_expr(expr: Any) -> None:
    """A symbolic shape expression (``s77``, ``2*s0 + 1``, ``FloorDiv(s0, 2)``): torch parses it
    with ``sympy.sympify``, which evaluates Python, so only arithmetic over shape symbols passes."""
    if isinstance(expr, str):
        expr = SREPR_SYMBOL.sub(lambda m: m.group(1), expr)
    if (not isinstance(expr, str) or len(expr) > 200 or not EXPR_CHARS.match(expr) or "__" in expr or "=" in expr
            or "**" in expr or any(len(d) > MAX_LITERAL_DIGITS for d in re.findall(r"\d+", expr))):
        raise refuse(f"a symbolic shape expression that is not plain arithmetic ({str(expr)[:60]!r})")
    for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr):
        if not (SYMBOL.match(token) or token in EXPR_FUNCS):
            raise refuse(f"a symbolic shape expression names {token[:40]!r}")


def _walk(node: Any, path: str = "") -> None:
    """Every value of the serialized program: names are identifiers, expressions arithmetic, and
    nothing that would need Python objects (sub-graphs, custom or opaque objects, operators as values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("as_graph", "as_custom_obj", "as_operator", "as_custom_objs", "custom_obj", "as_opaque"):
                if value is not None:
                    raise refuse(f"{key} values (sub-graphs or Python objects) are not supported")
            elif key == "name" and value is not None and not IDENT.match(str(value)):
                raise refuse(f"the name {str(value)[:40]!r} is not an identifier")
            elif key == "expr_str":
                _check_expr(value)
            elif key in ("parameter_name", "buffer_name", "tensor_constant_name", "fqn") and not FQN.match(str(value)):
                raise refuse(f"the module path {str(value)[:40]!r} is not dotted identifiers")
            _walk(value, key)
    elif isinstance(node, list):
        for item in node:
            _walk(item, path)


def _check_spec(spec: Any) -> None:
    if spec in (None, ""):
        return
    try:
        parsed = json.loads(spec)
    except (TypeError, ValueError, RecursionError):
        raise refuse("an input/output tree spec that is not JSON") from None

    def visit(x: Any) -> None:
        if isinstance(x, dict):
            if "type" in x and x["type"] not in PRETTY_TYPES:
                raise refuse(f"inputs or outputs of type {str(x['type'])[:60]!r} (plain tensors, tuples, lists, dicts only)")
            for v in x.values():
                visit(v)
        elif isinstance(x, list):
            for v in x:
                visit(v)

    visit(parsed)


def _module_stack(meta: dict[str, Any]) -> str | None:
    raw = meta.get("nn_module_stack")
    if not isinstance(raw, str):
        return None
    for item in raw.split(";"):
        parts = item.split(",")
        if len(parts) != 3 or not re.match(r"^[A-Za-z0-9_.]*$", parts[0]) or not FQN.match(parts[1]) \
                or not TYPE_NAME.match(parts[2]):
            raise refuse(f"module metadata {item[:60]!r} is not path,path,type")
    return raw


def check_program(program: Any) -> dict[str, Any]:
    """The serialized ``ExportedProgram`` (parsed JSON) checked and cut down to what is needed to
    rebuild it; a :class:`CheckpointError` for anything that could run code. Pure: no torch
    deserialization happens here."""
    from torch._export.serde.schema import SCHEMA_VERSION

    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise refuse("models/*.json is not a serialized ExportedProgram")
    version = program.get("schema_version") or {}
    if not isinstance(version, dict) or version.get("major") != SCHEMA_VERSION[0]:
        raise refuse(f"schema version {version} (this torch reads {SCHEMA_VERSION[0]}.x)")
    gm = program["graph_module"]
    graph = gm.get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise refuse("the program has no graph")
    if gm.get("treespec_namedtuple_fields"):
        raise refuse("named-tuple inputs or outputs are not supported")
    verifiers = program.get("verifiers") or []
    if not isinstance(verifiers, list) or any(v not in ("", "ATEN", "TRAINING") for v in verifiers):
        raise refuse(f"unknown verifier dialect {verifiers!r}")
    ranges = program.get("range_constraints") or {}
    if not isinstance(ranges, dict) or any(not SYMBOL.match(str(k)) for k in ranges):
        raise refuse("range constraints name something other than shape symbols")
    for node in graph["nodes"]:
        if not isinstance(node, dict):
            raise refuse("a graph node is not an object")
        _check_target(node.get("target"))
        meta = node.get("metadata") or {}
        stack = _module_stack(meta) if isinstance(meta, dict) else None
        node["metadata"] = {"nn_module_stack": stack} if stack else {}  # stack traces, source fns, custom: dropped
    for entry in gm.get("module_call_graph") or []:
        sig = (entry or {}).get("signature") or {}
        _check_spec(sig.get("in_spec"))
        _check_spec(sig.get("out_spec"))
    _walk(program)
    cleaned = dict(program)
    cleaned["guards_code"] = []  # Python source torch would exec in ExportedProgram.module(); never kept
    cleaned["graph_module"] = dict(gm, metadata={})
    return cleaned


def layer_kinds(program: dict[str, Any]) -> dict[str, str]:
    """``{module path: class name}`` from the nodes' ``nn_module_stack`` (``neck.1`` -> ``Res``)."""
    kinds: dict[str, str] = {}
    for node in program["graph_module"]["graph"]["nodes"]:
        raw = (node.get("metadata") or {}).get("nn_module_stack")
        for item in (raw or "").split(";"):
            parts = item.split(",")
            if len(parts) == 3:  # the root's path is "" (its class: the user's model)
                kinds.setdefault(parts[1], parts[2].rsplit(".", 1)[-1])
    return kinds


def parameter_names(program: dict[str, Any]) -> set[str]:
    specs = program["graph_module"].get("signature", {}).get("input_specs", [])
    return {s["parameter"]["parameter_name"] for s in specs if isinstance(s, dict) and s.get("parameter")}


def module_from_graph(graph: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """The checked program rebuilt with ``state`` and unflattened into its module hierarchy; each
    module carries the class name the export recorded (``asl_kind``) for the layer picker."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    if not graph:
        raise CheckpointError("this torch.export checkpoint carries no graph")
    if len(graph) > MAX_GRAPH_BYTES:
        raise refuse(f"the graph is {len(graph) / 2**20:.0f} MiB of JSON")
    try:
        program = check_program(json.loads(graph))
    except (ValueError, RecursionError):
        raise refuse("the graph is not valid JSON") from None
    params = parameter_names(program)
    tensors = {k: (nn.Parameter(v, requires_grad=False) if k in params else v) for k, v in state.items()}
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        ep = ExportedProgramDeserializer().deserialize(serialized, tensors, {}, None)
        module = torch.export.unflatten(ep)
    except CheckpointError:
        raise
    except Exception as exc:  # torch's deserializer raises many kinds on a malformed program
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise refuse(f"torch could not rebuild the program: {first[:160]}") from None
    kinds = layer_kinds(program)
    for name, sub in module.named_modules():
        if name in kinds:
            object.__setattr__(sub, "asl_kind", kinds[name])
    return module.eval()


def input_shape(program: dict[str, Any]) -> tuple[int, ...] | None:
    """The shape of the program's one user input, from the graph's tensor values (ints only;
    a symbolic batch size reads as -1)."""
    gm = program["graph_module"]
    users = [s["user_input"]["arg"]["as_tensor"]["name"] for s in gm.get("signature", {}).get("input_specs", [])
             if isinstance(s, dict) and s.get("user_input") and (s["user_input"].get("arg") or {}).get("as_tensor")]
    if len(users) != 1:
        return None
    meta = gm["graph"].get("tensor_values", {}).get(users[0])
    if not meta:
        return None
    return tuple(int(s["as_int"]) if "as_int" in s else -1 for s in meta.get("sizes", []))


# ---------------------------------------------------------------------------- the archive


def _tensor(z: SafeZip, base: str, entry: Any, fqn: str) -> torch.Tensor:
    from torch._export.serde.schema import ScalarType
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    if not isinstance(entry, dict):
        raise refuse(f"weight {fqn[:60]!r} has no description")
    if entry.get("use_pickle"):
        raise refuse(f"weight {fqn[:60]!r} is stored as a pickle (only raw tensor bytes are read)")
    member = entry.get("path_name")
    meta = entry.get("tensor_meta")
    if not isinstance(member, str) or not MEMBER.match(member) or not isinstance(meta, dict):
        raise refuse(f"weight {fqn[:60]!r} names an odd member {str(member)[:40]!r}")
    try:
        dtype = _SERIALIZE_TO_TORCH_DTYPE[ScalarType(meta["dtype"])]
        sizes = [int(s["as_int"]) for s in meta["sizes"]]
        strides = [int(s["as_int"]) for s in meta["strides"]]
        offset = int(meta["storage_offset"]["as_int"])
    except (KeyError, TypeError, ValueError):
        raise refuse(f"weight {fqn[:60]!r} has a symbolic or malformed shape") from None
    raw = z.read(f"{base}{member}")
    size = torch.empty((), dtype=dtype).element_size()
    if len(raw) % size or len(sizes) != len(strides) or any(v < 0 for v in sizes + strides) or offset < 0:
        raise refuse(f"weight {fqn[:60]!r}: {len(raw)} bytes do not fit {dtype} {sizes}")
    numel = len(raw) // size
    needed = offset + sum((n - 1) * s for n, s in zip(sizes, strides)) + 1 if all(sizes) else 0
    if needed > numel:  # as_strided past the end would read memory that is not the weight
        raise refuse(f"weight {fqn[:60]!r}: shape {sizes} with strides {strides} reaches past its {numel} values")
    if math.prod(sizes) > numel:  # zero or overlapping strides: the clone below would be larger than the file
        raise refuse(f"weight {fqn[:60]!r}: shape {sizes} holds more values than the {numel} stored")
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return torch.as_strided(flat, sizes, strides, offset).clone()


def read_pt2(path, max_bytes: int) -> tuple[str, dict[str, torch.Tensor]]:
    """``(checked graph JSON, state dict)`` of the archive's one model."""
    with SafeZip(path, max_bytes) as z:
        names = z.names()
        models = [n for n in names if re.match(r"^[^/]+/models/[^/]+\.json$", n)]
        if len(models) != 1:
            raise refuse(f"expected one model in the archive, found {len(models)}")
        root, model = models[0].split("/models/")
        model = model[: -len(".json")]
        if f"{root}/data/weights/{model}.pt" in names or f"{root}/data/constants/{model}.pt" in names:
            raise refuse("its weights are in the legacy pickled format; save it again with torch.export.save")
        for member in (models[0], f"{root}/data/weights/{model}_weights_config.json",
                       f"{root}/data/constants/{model}_constants_config.json"):
            info = z.infos.get(member)
            if info is not None and info.file_size > MAX_GRAPH_BYTES:  # before it is parsed
                raise refuse(f"{member.rsplit('/', 1)[-1][:60]!r} is {info.file_size / 2**20:.0f} MiB of JSON")
        try:
            program = json.loads(z.read(models[0]))
            weights = json.loads(z.read(f"{root}/data/weights/{model}_weights_config.json"))
            constants_name = f"{root}/data/constants/{model}_constants_config.json"
            constants = json.loads(z.read(constants_name)) if constants_name in names else {"config": {}}
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise refuse("a JSON member is not valid JSON") from None
        if (constants.get("config") if isinstance(constants, dict) else None):
            raise refuse("the program has tensor constants or Python objects (only parameters and buffers are read)")
        cleaned = check_program(program)
        config = weights.get("config") if isinstance(weights, dict) else None
        if not isinstance(config, dict):
            raise refuse("the weights config is not an object")
        state = {}
        for fqn, entry in config.items():
            if not FQN.match(str(fqn)):
                raise refuse(f"weight name {str(fqn)[:40]!r} is not dotted identifiers")
            state[fqn] = _tensor(z, f"{root}/data/weights/", entry, fqn)
    return json.dumps(cleaned, separators=(",", ":")), state
