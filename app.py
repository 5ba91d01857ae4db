"""ASL Lens. Run with ``streamlit run app.py``; the pages live in ``pages/``."""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("pages/00_Home.py", title="Home", url_path="Home", default=True),
    st.Page("pages/01_Checkpoints.py", title="Checkpoints", url_path="Checkpoints"),
    st.Page("pages/02_Explore.py", title="Explore", url_path="Explore"),
    st.Page("pages/03_Compare.py", title="Compare", url_path="Compare"),
]

st.navigation(PAGES).run()
