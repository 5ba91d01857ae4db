"""ASL Lens: the app's entry point and router (``streamlit run app.py`` or ``asl-lens app``).

Streamlit's own navigation draws the sidebar; each page is one short script in ``app_pages/`` (not ``pages/``: Streamlit would also
auto-list that folder, and a direct link to /Checkpoints then showed its own, older page list)."""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("app_pages/home.py", title="Home", url_path="home", default=True),
    st.Page("app_pages/01_Checkpoints.py", title="Checkpoints", url_path="Checkpoints"),
    st.Page("app_pages/02_Explore.py", title="Explore", url_path="Explore"),
    st.Page("app_pages/03_Compare.py", title="Compare", url_path="Compare"),
]

st.navigation(PAGES).run()

from ui import serve  # noqa: E402 - after the page: what only some pages need is imported once one has been served

serve.start_later()
