"""The checkpoint format, and safe loading of ours and other people's checkpoints.

By idea:

* :mod:`~asl_core.checkpoint.meta`: the metadata (architecture, classes, input recipe, dataset,
  history, metrics) and its validation;
* :mod:`~asl_core.checkpoint.recipe`: the input recipe (resize, centre crop) and the one function
  that applies it;
* :mod:`~asl_core.checkpoint.files`: file I/O (``atomic_write_bytes``, used across the package;
  telling kinds apart; the safe readers; bounded zip reading);
* :mod:`~asl_core.checkpoint.format`: our ``.safetensors`` format (save, load, content hash);
* :mod:`~asl_core.checkpoint.foreign`: other people's files, one small reader per format behind
  ``read_foreign(path) -> ForeignModel``.

``from asl_core.checkpoint import load_checkpoint`` (and every other name below) is the public door.
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch asl_core.checkpoint.os.fsync to kill a process mid-write)

from asl_core.checkpoint.files import MAX_CHECKPOINT_BYTES, atomic_write_bytes, read_checkpoint_file
from asl_core.checkpoint.format import (CHECKPOINT_SUFFIX, GRAPH_KEY, LoadedCheckpoint, build_and_load, check_finite,
                                        checkpoint_path, content_hash, describe_mismatch, list_checkpoints,
                                        load_checkpoint, now_iso, read_metadata, save_checkpoint, serialize, versions)
from asl_core.checkpoint.meta import FOREIGN_METHOD, FORMAT, META_KEY, CheckpointMeta
from asl_core.checkpoint.recipe import apply_recipe
from asl_core.errors import CheckpointError, NotOurCheckpointError

FOREIGN_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar", ".pt2", ".zip")


def __getattr__(name: str):  # the foreign readers import the format: load them on first use
    if name in ("extract_state_dict", "foreign_meta", "read_foreign", "ForeignModel", "guess_arch"):
        from asl_core.checkpoint import foreign

        return getattr(foreign, name)
    raise AttributeError(name)


__all__ = ["CheckpointError", "NotOurCheckpointError", "CHECKPOINT_SUFFIX", "FOREIGN_METHOD", "FOREIGN_SUFFIXES", "FORMAT", "GRAPH_KEY", "MAX_CHECKPOINT_BYTES",
           "META_KEY", "CheckpointMeta", "LoadedCheckpoint", "apply_recipe", "atomic_write_bytes", "build_and_load",
           "check_finite", "checkpoint_path", "content_hash", "describe_mismatch", "list_checkpoints", "load_checkpoint",
           "now_iso", "read_checkpoint_file", "read_metadata", "save_checkpoint", "serialize", "versions"]
