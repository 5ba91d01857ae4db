"""What every page does first: page config, session state, sidebar links, thread limits."""

from __future__ import annotations

import os

import streamlit as st

from ui import nav
from ui.state import init_state

THREADS_ENV = "ASL_LENS_THREADS"


def default_threads() -> int:
    """A quarter of the cores, at least one. With BLAS and torch each spinning a thread per
    core, a small PCA on a busy 2-core machine took 1.6 s instead of 6 ms (OpenBLAS waiting
    on its own threads); the app's work is many small calls, so fewer threads win."""
    try:
        return max(1, int(os.environ[THREADS_ENV]))
    except (KeyError, ValueError):
        return max(1, (os.cpu_count() or 1) // 4)


@st.cache_resource(show_spinner=False)
def limit_threads() -> int:
    """Once per server process: cap BLAS/OpenMP pools and torch's intra-op threads."""
    import torch
    from threadpoolctl import threadpool_limits

    n = default_threads()
    threadpool_limits(limits=n)
    torch.set_num_threads(n)
    return n


def setup(title: str) -> None:
    st.set_page_config(page_title=f"{title} · ASL Lens" if title != "ASL Lens" else title, layout="wide")
    limit_threads()
    init_state()
    nav.sidebar()
