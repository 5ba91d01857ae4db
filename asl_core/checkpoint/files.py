"""File I/O of the checkpoint package: atomic writes (used across the project), telling file
kinds apart, and the safe readers: safetensors, ``torch.load(weights_only=True)``, and zip
archives read member by member with bounds (no zip bombs, no paths outside the archive)."""

from __future__ import annotations

import argparse
import os
import pickle
import re
import struct
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from asl_core.errors import CheckpointError

MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB; ResNet-50 is ~100 MB
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_RATIO = 200  # an uncompressed member over 200x its compressed size is a bomb, not weights

# ---------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.
    A crash at any point leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------------- kinds and readers


def sniff(head: bytes) -> str:
    if head[:2] == b"PK":
        return "zip"
    # safetensors first: its little-endian header length can start with 0x80, a pickle's first byte
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata through safetensors' own reader (it validates the header:
    size, offsets, dtypes and shapes) -- the one reader of the format in the project."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a readable safetensors file (truncated or corrupted?): {str(exc)[:200]}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError("safetensors metadata is not an object")
    return tensors, metadata


def read_safetensors_header(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a readable safetensors file (truncated or corrupted?): {str(exc)[:200]}") from None


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|global[: ]+'?([\w.]+)")


_SAFE_MODULES = ("torch", "collections", "argparse", "_codecs", "numpy.core.multiarray", "builtins")


def _pickle_globals(raw: bytes) -> list[str]:
    """The ``module.name`` globals a pickle refers to, read from its opcodes (pickletools: nothing
    is unpickled); ``STACK_GLOBAL`` takes the two strings pushed before it."""
    import pickletools

    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(raw[: 16 << 20]):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
    except Exception:  # a malformed pickle: name what was read before the fault
        pass
    return found


def _named_object(source: Path | bytes | None) -> str | None:
    if source is None:
        return None
    try:
        raw = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()[: 64 << 20]
        if raw[:2] == b"PK":
            import io

            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                raw = b""
                if pkl:
                    with z.open(pkl) as f:  # at most 16 MiB inflated, whatever the member claims
                        raw = f.read(16 << 20)
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, EOFError):
        return None
    unsafe = [g for g in _pickle_globals(bytes(raw)) if not g.startswith(_SAFE_MODULES)]
    return unsafe[0][:80] if unsafe else None


def pickle_refusal(exc: BaseException, source: Path | bytes | None = None) -> str:
    """One plain line for a pickle the safe unpickler refused, naming the object, without
    PyTorch's own multi-line explanation (issue 20, defect 6)."""
    match = _GLOBAL.search(str(exc))
    name = (match.group(1) or match.group(2)) if match else _named_object(source)
    what = f" ({name})" if name else ""
    return (f"refused to load: the file holds a Python object{what} that could run code when unpickled; "
            "only tensors are accepted, and nothing in the file was run")


def zip_entry_count(source: Path | bytes) -> int | None:
    """The member count an untrusted zip's end record states (read before ``zipfile`` parses a
    directory of any length); ``None`` when there is no end record (not a zip: let the reader say)."""
    if isinstance(source, (bytes, bytearray)):
        tail = bytes(source[-(65536 + 22):])
    else:
        with open(source, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - (65536 + 22)))
            tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = struct.unpack("<H", tail[at + 10 : at + 12])[0]
    return None if count == 0xFFFF else count  # 0xFFFF: a zip64 record says the real count


def check_torch_zip(source: Path | bytes) -> None:
    """torch.save's zip before ``torch.load`` reads it: a bounded member count and every member
    stored, not compressed (torch.save never compresses; a deflated member can inflate 1000x)."""
    import io

    count = zip_entry_count(source)
    if count is not None and count > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"refused: the archive has {count:,} members (at most {MAX_ZIP_MEMBERS:,})")
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return  # torch.load says what is wrong with it
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"refused: the archive has {len(infos):,} members (at most {MAX_ZIP_MEMBERS:,})")
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED or i.file_size != i.compress_size]
    if packed:
        raise CheckpointError(f"refused: member {packed[0][:60]!r} is compressed; torch.save stores its members as they "
                              "are (a compressed one could inflate far past the file's size)")


def read_pickled(path: Path | None = None, data: bytes | None = None) -> Any:
    """``torch.load(weights_only=True)``, with one more allowed class: ``argparse.Namespace``,
    the ``args`` timm's train.py stores in its checkpoints (a plain attribute bag; what it holds
    still passes the same allow-list). Nothing else is allowed through. A zip (torch.save's
    format) is checked first by :func:`check_torch_zip`."""
    import io

    if data is not None:
        head = bytes(data[:4])
    else:
        with open(path, "rb") as f:
            head = f.read(4)
    if head.startswith(b"PK"):
        check_torch_zip(data if data is not None else Path(path))
    source = io.BytesIO(data) if data is not None else path
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(pickle_refusal(exc, data if data is not None else path)) from None
    # AssertionError, OverflowError, RecursionError: torch's legacy reader on bytes found by
    # tests/reliability/test_fuzz.py (a flipped storage key, a huge count, deep nesting)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, AssertionError, OverflowError, RecursionError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"not a readable PyTorch checkpoint (truncated or corrupted?): {first[:160]}") from None


def check_size(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> int:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"not a file: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"checkpoint is {size / 2**20:.2f} MiB, over the {max_bytes / 2**20:.2f} MiB limit")
    if size == 0:
        raise CheckpointError("checkpoint file is empty")
    return size


def file_kind(path: Path) -> str:
    """``safetensors``, ``pickle``, ``torch-zip`` (torch.save's zip), ``pt2`` (torch.export.save),
    ``zip`` (any other zip: a timm hub folder) or ``unknown``."""
    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff(head)
    if kind != "zip":
        return kind
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return "torch-zip"  # let torch.load say what is wrong with it
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names) and any("/models/" in n for n in names):
        return "pt2"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-zip"
    return "zip"


def read_checkpoint_file(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> tuple[str, Any, dict[str, str]]:
    """Returns ``(kind, tensors_or_object, safetensors_metadata)`` after size and type checks,
    for a single-file checkpoint (safetensors or torch.save's formats)."""
    path = Path(path)
    check_size(path, max_bytes)
    kind = file_kind(path)
    if kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        return kind, tensors, metadata
    if kind in ("torch-zip", "pickle"):
        return kind, read_pickled(path), {}
    raise CheckpointError("unrecognised file: not a safetensors file nor a PyTorch checkpoint")


# ---------------------------------------------------------------------------- zip archives


class SafeZip:
    """Read members of an untrusted zip with limits: at most :data:`MAX_ZIP_MEMBERS` members, no
    absolute or ``..`` paths, and no member larger than ``max_bytes`` or inflating more than
    :data:`MAX_ZIP_RATIO` times (checked from the header, then enforced while reading). Members
    are read into memory by name; nothing is extracted to disk."""

    def __init__(self, path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES):
        self.max_bytes = max_bytes
        count = zip_entry_count(path) if isinstance(path, (str, Path)) else None
        if count is not None and count > MAX_ZIP_MEMBERS:  # before zipfile parses a directory of any length
            raise CheckpointError(f"refused: the archive has {count:,} members (at most {MAX_ZIP_MEMBERS:,})")
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise CheckpointError(f"not a readable zip archive: {str(exc)[:120]}") from None
        if len(infos) > MAX_ZIP_MEMBERS:
            raise CheckpointError(f"refused: the archive has {len(infos):,} members (at most {MAX_ZIP_MEMBERS:,})")
        total = 0
        for info in infos:
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise CheckpointError(f"refused: the archive holds a path outside itself ({name[:80]!r})")
            if info.file_size > max_bytes or info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1) + (1 << 20):
                raise CheckpointError(f"refused: archive member {name[:60]!r} would inflate to "
                                      f"{info.file_size / 2**20:.1f} MiB (a zip bomb?)")
            total += info.file_size
        if total > max_bytes:
            raise CheckpointError(f"refused: the archive inflates to {total / 2**20:.1f} MiB, over the "
                                  f"{max_bytes / 2**20:.0f} MiB limit")
        self.infos = {i.filename: i for i in infos if not i.is_dir()}

    def names(self) -> list[str]:
        return list(self.infos)

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise CheckpointError(f"the archive has no member {name!r}")
        out = bytearray()
        try:
            with self.zip.open(info) as f:  # the header can lie: enforce the size while inflating
                while chunk := f.read(1 << 20):
                    out += chunk
                    if len(out) > info.file_size or len(out) > self.max_bytes:
                        raise CheckpointError(f"refused: archive member {name[:60]!r} inflates past its stated size")
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError) as exc:
            raise CheckpointError(f"archive member {name[:60]!r} is unreadable: {str(exc)[:120]}") from None
        return bytes(out)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
