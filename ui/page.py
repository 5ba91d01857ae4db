"""What every page does first: page config, session state, thread limits, the settings."""

from __future__ import annotations

import streamlit as st

from asl_core.errors import SettingsError
from asl_core.runtime import limit_threads as _limit_threads
from asl_core.settings import Settings, get_settings
from ui.state import init_state


@st.cache_resource(show_spinner=False)
def limit_threads() -> int:
    """Once per server process: a quarter of the cores unless ``ASL_LENS_THREADS`` says otherwise
    (many small calls; with BLAS and torch spinning a thread per core, a small PCA on a busy
    2-core machine took 1.6 s instead of 6 ms)."""
    return _limit_threads(role="app")


def setup(title: str) -> Settings:
    """Configure the page and return the settings; a bad ``ASL_LENS_*`` value stops the page
    with a message that names it."""
    st.set_page_config(page_title=f"{title} · ASL Lens" if title != "ASL Lens" else title, layout="wide")
    try:
        settings = get_settings()
        limit_threads()
    except SettingsError as exc:
        st.error(f"Server configuration: {exc}")
        st.stop()
    init_state()
    return settings
