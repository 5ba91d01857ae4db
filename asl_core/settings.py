"""One settings object, read from the environment (``ASL_LENS_*``); tests point it at tmp dirs.

Every reader of a setting (the app, the library CLI, the cache, the demo) calls
:func:`get_settings`, so each variable is parsed in one place, one way. A bad value is a
:class:`SettingsError` naming the variable, never a silent fallback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asl_core.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent

CHECKPOINTS_ENV = "ASL_LENS_CHECKPOINTS"
CACHE_ENV = "ASL_LENS_CACHE"
MAX_UPLOAD_ENV = "ASL_LENS_MAX_UPLOAD_MB"
THREADS_ENV = "ASL_LENS_THREADS"
DATA_ROOTS_ENV = "ASL_LENS_DATA_ROOTS"
GPU_PROJECTION_ENV = "ASL_LENS_GPU_PROJECTION"

DEFAULT_MAX_UPLOAD_MB = 200.0

# --- bounded storage and read-only mode (issue 14)
CACHE_MAX_ENV = "ASL_LENS_CACHE_MAX_MB"
LIBRARY_QUOTA_ENV = "ASL_LENS_LIBRARY_QUOTA_MB"
READ_ONLY_ENV = "ASL_LENS_READ_ONLY"
WARM_FIRST_VIEW_ENV = "ASL_LENS_WARM_FIRST_VIEW"  # issue 20: set by `asl-lens demo --serve`
DEFAULT_CACHE_MAX_MB = 2048.0     # room for the features and projections of many models; LRU past it
DEFAULT_LIBRARY_QUOTA_MB = 4096.0  # ~40 ResNet-50 checkpoints (~100 MB each); a digits_cnn one is ~0.4 MB


@dataclass(frozen=True)
class Settings:
    """``checkpoints_dir``: the library the app lists; ``cache_dir``: the engine's disk cache;
    ``max_upload_mb``: the largest file the library accepts; ``threads``: BLAS/torch threads per
    process (``None``: :func:`asl_core.runtime.default_threads` decides); ``data_roots``: folders an
    operator allows foreign uploads to be evaluated on (image folders and torchvision files found
    under them are offered by name; the browser never sends a path)."""

    checkpoints_dir: Path
    cache_dir: Path
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    threads: int | None = None
    data_roots: tuple[Path, ...] = ()
    # --- bounded storage and read-only mode (issue 14): ``cache_max_mb`` caps the disk cache
    # (least recently used entries go first); ``library_quota_mb`` caps the checkpoint library's
    # total size for imports; ``read_only`` refuses every change to the library (app and CLI).
    cache_max_mb: float = DEFAULT_CACHE_MAX_MB
    library_quota_mb: float = DEFAULT_LIBRARY_QUOTA_MB
    read_only: bool = False
    # issue 13: t-SNE/UMAP on the GPU with cuML when installed ("auto", the default) or never ("off")
    gpu_projection: bool = True
    # issue 20: the server computes Compare's first view into the disk cache as it starts
    warm_first_view: bool = False

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def cache_max_bytes(self) -> int:
        return int(self.cache_max_mb * 2**20)

    @property
    def library_quota_bytes(self) -> int:
        return int(self.library_quota_mb * 2**20)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            checkpoints_dir=_path(env, CHECKPOINTS_ENV, REPO_ROOT / "checkpoints"),
            cache_dir=_path(env, CACHE_ENV, REPO_ROOT / ".cache"),
            max_upload_mb=_positive_float(env, MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB),
            threads=_positive_int(env, THREADS_ENV),
            data_roots=_folders(env, DATA_ROOTS_ENV),
            # --- issue 14
            cache_max_mb=_positive_float(env, CACHE_MAX_ENV, DEFAULT_CACHE_MAX_MB),
            library_quota_mb=_positive_float(env, LIBRARY_QUOTA_ENV, DEFAULT_LIBRARY_QUOTA_MB),
            read_only=_flag(env, READ_ONLY_ENV),
            gpu_projection=_auto_or_off(env, GPU_PROJECTION_ENV),
            warm_first_view=_flag(env, WARM_FIRST_VIEW_ENV),
        )


def get_settings() -> Settings:
    """The settings as the environment says now (cheap: read on every call, so a test's
    ``monkeypatch.setenv`` is seen)."""
    return Settings.from_env()


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else default


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}={raw!r} must be a positive number")
    return value


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r} must be >= 1")
    return value


def _folders(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    """``os.pathsep``-separated existing folders, resolved (symlinks followed) and deduplicated."""
    raw = env.get(name, "").strip()
    folders: list[Path] = []
    for part in filter(None, (p.strip() for p in raw.split(os.pathsep))):
        path = Path(part).expanduser()
        if not path.is_dir():
            raise SettingsError(f"{name}: {part!r} is not an existing folder")
        resolved = path.resolve()
        if resolved not in folders:
            folders.append(resolved)
    return tuple(folders)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={env.get(name)!r} must be one of 1/0, true/false, yes/no, on/off")


def _auto_or_off(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "auto", "on", "1"):
        return True
    if raw in ("off", "0"):
        return False
    raise SettingsError(f"{name}={raw!r} must be auto or off")
