"""A corpus of hostile and broken checkpoint files, generated (no binary blobs committed).

Each case is ``(category, label, filename, bytes, kwargs)``: ``kwargs`` are what the upload
form would pass (``arch``, ``num_classes``). Pickle payloads write a marker file or import
a module when unpickled; the tests check that neither happened.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess

import torch

FOREIGN = {"arch": "digits_cnn", "num_classes": 10}


def _split_header(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join_header(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _with_meta(data: bytes, edit) -> bytes:
    header, body = _split_header(data)
    meta = json.loads(header["__metadata__"]["asl_lens"])
    result = edit(meta)
    header["__metadata__"]["asl_lens"] = result if isinstance(result, str) else json.dumps(meta)
    return _join_header(header, body)


class RunsCommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsSubprocess:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


class Evals:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


class ImportsModule:
    def __reduce__(self):
        return (__import__, ("antigravity",))


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def checkpoint_cases(good: bytes, state: dict[str, torch.Tensor], marker: str, seed: int = 0):
    """Yield the corpus. ``good``: the bytes of one of our checkpoints; ``state``: its weights."""
    rng = random.Random(seed)
    # random bytes with every accepted extension
    for ext in (".pt", ".pth", ".ckpt", ".safetensors", ".bin"):
        for size in (1, 17, 4096):
            yield "random bytes", f"{size} B{ext}", f"junk{ext}", rng.randbytes(size), FOREIGN
    # truncated safetensors
    for frac in (0.0, 0.001, 0.01, 0.3, 0.7, 0.999):
        cut = max(0, int(len(good) * frac))
        yield "truncated safetensors", f"{frac:.1%}", "cut.safetensors", good[:cut], {}
    # bit flips in the weights region (the content hash catches them)
    header_len = 8 + struct.unpack("<Q", good[:8])[0]
    for _ in range(8):
        data = bytearray(good)
        pos = rng.randrange(header_len, len(good))
        data[pos] ^= 1 << rng.randrange(8)
        yield "bit-flipped safetensors", f"byte {pos}", "flip.safetensors", bytes(data), {}
    # metadata that is malformed, incomplete, of the wrong type, or lies about shapes
    yield "bad metadata", "not JSON", "m.safetensors", _with_meta(good, lambda m: "{not json"), {}
    yield "bad metadata", "JSON list", "m.safetensors", _with_meta(good, lambda m: "[1, 2]"), {}
    for key in ("arch", "num_classes", "class_names", "input_shape", "mean", "std"):
        yield "bad metadata", f"missing {key}", "m.safetensors", _with_meta(good, lambda m, k=key: m.pop(k)), {}
    lies = {
        "num_classes 'ten'": lambda m: m.update(num_classes="ten"),
        "unknown arch": lambda m: m.update(arch="vgg99"),
        "claims resnet18": lambda m: m.update(arch="resnet18"),
        "claims 5 classes": lambda m: m.update(num_classes=5, class_names=list("abcde")),
        "claims 3 channels": lambda m: m.update(input_shape=[3, 8, 8], mean=[0.1] * 3, std=[0.2] * 3),
        "class names short": lambda m: m.update(class_names=["a"]),
        "NaN mean": lambda m: m.update(mean=[float("nan")]),
        "zero std": lambda m: m.update(std=[0.0]),
        "future format": lambda m: m.update(format="asl-lens-checkpoint/99"),
        "unknown method": lambda m: m.update(method="magic"),
    }
    for label, edit in lies.items():
        yield "bad metadata", label, "m.safetensors", _with_meta(good, edit), {}
    # pickles that would run code or import a module
    payloads = {
        "os.system": RunsCommand(marker),
        "subprocess.call": RunsSubprocess(marker),
        "eval": Evals(marker),
        "__import__": ImportsModule(),
    }
    for label, payload in payloads.items():
        obj = dict(state, evil=payload)
        yield "code-running pickle", f"{label} via torch.save", "evil.pt", _torch_bytes(obj), FOREIGN
        yield "code-running pickle", f"{label} raw pickle", "evil.pth", pickle.dumps(obj, protocol=2), FOREIGN
        yield "code-running pickle", f"{label} in Lightning dict", "evil.ckpt", _torch_bytes({"state_dict": state, "cb": payload}), FOREIGN
    # state dicts that do not fit
    keys = list(state)
    missing = {k: v for k, v in state.items() if k != keys[0]}
    extra = dict(state, **{"head.extra.weight": torch.zeros(3)})
    shaped = dict(state, **{"fc.weight": torch.zeros(7, state["fc.weight"].shape[1])})
    for label, sd in {"missing key": missing, "extra key": extra, "mis-shaped key": shaped}.items():
        yield "ill-fitting state dict", label, "sd.pt", _torch_bytes(sd), FOREIGN
    yield "ill-fitting state dict", "wrong architecture asked", "sd.pt", _torch_bytes(state), {"arch": "resnet18", "num_classes": 10}
    yield "ill-fitting state dict", "wrong class count asked", "sd.pt", _torch_bytes(state), {"arch": "digits_cnn", "num_classes": 4}
    yield "ill-fitting state dict", "not a dict", "sd.pt", _torch_bytes([1, 2, 3]), FOREIGN
    yield "ill-fitting state dict", "non-tensor values", "sd.pt", _torch_bytes({"a": 1, "b": "x"}), FOREIGN
    # NaN / Inf weights
    for label, value in {"NaN": float("nan"), "+Inf": float("inf"), "-Inf": float("-inf")}.items():
        sd = {k: v.clone() for k, v in state.items()}
        sd["fc.weight"][0, 0] = value
        yield "NaN/Inf weights", f"{label} in .pt", "nan.pt", _torch_bytes(sd), FOREIGN
    # wrong extension
    yield "wrong file type", ".txt", "notes.txt", b"hello", FOREIGN
    yield "wrong file type", ".zip", "weights.zip", b"PK\x03\x04", FOREIGN
