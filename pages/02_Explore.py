"""Explore: placeholder until the representation engine lands."""

import streamlit as st

from ui import engine

st.set_page_config(page_title="Explore · ASL Lens", layout="wide")
st.title("Explore")
engine.missing("This page")
