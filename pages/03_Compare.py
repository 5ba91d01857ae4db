"""Compare: placeholder until the representation engine lands."""

import streamlit as st

from ui import engine

st.set_page_config(page_title="Compare · ASL Lens", layout="wide")
st.title("Compare")
engine.missing("This page")
