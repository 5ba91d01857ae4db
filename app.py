"""ASL Lens: the app's entry point and router (``streamlit run app.py`` or ``asl-lens app``).

Streamlit's own navigation draws the sidebar; each page is one short script in ``pages/``."""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("pages/home.py", title="Home", url_path="home", default=True),
    st.Page("pages/01_Checkpoints.py", title="Checkpoints", url_path="Checkpoints"),
    st.Page("pages/02_Explore.py", title="Explore", url_path="Explore"),
    st.Page("pages/03_Compare.py", title="Compare", url_path="Compare"),
]

st.navigation(PAGES).run()
