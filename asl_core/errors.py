"""Errors a user can cause. They carry a one-line message meant for people.

The CLIs turn them into a one-line message on stderr and a non-zero exit; the app shows
them as an error box. Anything else that escapes is a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps


class UserError(Exception):
    """Bad input from the user (a missing folder, a wrong option, a broken file)."""


class DataError(UserError):
    """The dataset cannot be built from what the user pointed at."""


class CheckpointError(UserError):
    """A checkpoint file cannot be read, is unsafe, or does not fit the architecture."""


class LayerError(UserError, ValueError):
    """A layer name that the model does not have."""


class SettingsError(UserError):
    """An ``ASL_LENS_*`` environment variable with a value that cannot be used."""


class ReadOnlyError(UserError):
    """A change to the checkpoint library on a server started read-only (``ASL_LENS_READ_ONLY``)."""


class StorageError(UserError):
    """The library's quota or the disk is full: the change was refused and nothing was written."""


class NotOurCheckpointError(CheckpointError):
    """A readable file that is not an ASL Lens checkpoint: someone else's weights, which need
    an architecture (and a class count) to be loaded."""


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main`` so that user errors end in one line and exit status 2."""

    @wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `... | head` closed the pipe: not an error of ours
            sys.stderr.close()
            return 0

    return wrapper
