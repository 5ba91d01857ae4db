"""User errors become an error box on the page, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import streamlit as st

from asl_core.errors import UserError

T = TypeVar("T")


@contextmanager
def user_errors(stop: bool = True) -> Iterator[None]:
    """Show a ``UserError`` (bad upload, wrong layer, missing data) as ``st.error``; with
    ``stop`` the rest of the page is skipped, since it depends on what failed."""
    try:
        yield
    except (UserError, ValueError) as exc:  # the engine validates parameters with ValueError
        st.error(str(exc))
        if stop:
            st.stop()


def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or ``None`` after showing its ``UserError``."""
    try:
        return fn(*args, **kwargs)
    except (UserError, ValueError) as exc:
        st.error(str(exc))
        return None
