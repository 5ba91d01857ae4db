"""Sidebar links with readable names (Streamlit's own list would call the home page "app")."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

LINKS = (("app.py", "Home"), ("pages/01_Checkpoints.py", "Checkpoints"), ("pages/02_Explore.py", "Explore"),
         ("pages/03_Compare.py", "Compare"))


def sidebar() -> None:
    with st.sidebar:
        try:
            for path, label in LINKS:
                st.page_link(path, label=label)
        except StreamlitAPIException:
            return  # a page run on its own (tests): there is no app to link to
        st.divider()
