"""The bridge to the representation engine (``asl_core.features/projection/metrics/cache/
figures/analysis``). The engine is imported lazily so that pages keep working, with a
note, while a piece of it is not there yet."""

from __future__ import annotations

import importlib
from types import ModuleType

import streamlit as st


def module(name: str) -> ModuleType | None:
    """``asl_core.<name>`` or None when the engine has not got it yet."""
    try:
        return importlib.import_module(f"asl_core.{name}")
    except ImportError:
        return None


def has(name: str, attr: str) -> bool:
    mod = module(name)
    return mod is not None and hasattr(mod, attr)


def missing(what: str) -> None:
    st.info(f"{what} needs a part of the representation engine that this build does not have yet.")
