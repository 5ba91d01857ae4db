"""Where the app reads and writes, from environment variables (tests point them at tmp dirs)."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINTS_ENV = "ASL_LENS_CHECKPOINTS"
CACHE_ENV = "ASL_LENS_CACHE"
MAX_UPLOAD_ENV = "ASL_LENS_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 200

REPO_ROOT = Path(__file__).resolve().parent.parent


def checkpoints_dir() -> Path:
    """The checkpoint library: ``$ASL_LENS_CHECKPOINTS`` or ``checkpoints/`` next to app.py."""
    value = os.environ.get(CHECKPOINTS_ENV)
    return Path(value).expanduser() if value else REPO_ROOT / "checkpoints"


def cache_dir() -> Path:
    """The engine's disk cache: ``$ASL_LENS_CACHE`` or ``.cache/`` next to app.py."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else REPO_ROOT / ".cache"


def max_upload_mb() -> int:
    """Upload size limit in MB (``$ASL_LENS_MAX_UPLOAD_MB``, default 200); bad values fall back."""
    try:
        value = int(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB))
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB
    return value if value > 0 else DEFAULT_MAX_UPLOAD_MB
