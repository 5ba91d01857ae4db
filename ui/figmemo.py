"""Finished plotly figures, kept across reruns and sessions.

Building a figure is plotly's validation of every property (a template deep copy, every trace
checked): 1.1 s of a warm Compare run of 1.65 s went there, for figures identical to the last
run's. ``memo`` returns the figure built last time for the same inputs. A memoised figure is
final: callers pass it to ``st.plotly_chart`` (which copies it with ``to_dict``) and never
change it. Streamlit's own caches do not fit: ``cache_data`` pickles every figure on each hit,
and ``cache_resource`` hashes big arrays by a sample of their elements.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

MAX_FIGURES = 48


@st.cache_resource(show_spinner=False)
def _store() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def _feed(h: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"nd{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[" if isinstance(value, list) else b"(")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    elif value is None or isinstance(value, (str, int, float, bool, np.generic)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif hasattr(value, "__dataclass_fields__"):
        _feed(h, (type(value).__name__, {k: getattr(value, k) for k in value.__dataclass_fields__}))
    else:
        raise TypeError(f"figmemo cannot fingerprint {type(value).__name__}")


def fingerprint(*parts: Any) -> str:
    """A digest of ``parts``: arrays by their bytes, containers element by element."""
    h = hashlib.blake2b(digest_size=20)
    for p in parts:
        _feed(h, p)
    return h.hexdigest()


def memo(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``, built once per builder and distinct arguments."""
    key = (f"{build.__module__}.{build.__qualname__}", fingerprint(args, kwargs))
    store, lock = _store()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    fig = build(*args, **kwargs)
    with lock:
        store[key] = fig
        while len(store) > MAX_FIGURES:
            store.popitem(last=False)
    return fig
