"""Finished runs of the experiment, kept on disk so that a stopped experiment resumes where it
stopped: re-running the same command reuses every search score and every seed already trained
(same configuration, data, seed, teacher, thread count and torch: a run is bit-identical then, so
reusing it changes no figure). JSON under ``<cache>/experiment/`` (never pickle); delete freely.
(A few lines of our own: joblib.Memory would pickle the results.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from asl_core.checkpoint import atomic_write_bytes
from asl_core.settings import get_settings

MEMO_VERSION = "experiment-memo/1"


def memo_key(*parts: Any) -> str:
    ident = json.dumps([MEMO_VERSION, torch.__version__, torch.get_num_threads(), *parts], sort_keys=True, default=str)
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


def _path(key: str) -> Path:
    return get_settings().cache_dir / "experiment" / f"{key}.json"


def load(key: str) -> Any | None:
    try:
        return json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None


def store(key: str, value: Any) -> None:
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(value).encode())
    except OSError:
        pass  # a cache that cannot be written only costs time
