"""Home: what the tool is, the library summary, links to the pages."""

from __future__ import annotations

import streamlit as st

from ui import library, page, widgets

settings = page.setup("ASL Lens")

st.title("ASL Lens")
st.markdown(
    "Train image classifiers three ways (a **baseline**, **ASLoss** on chosen layers, and a **ClonalNet** "
    "guided by a frozen baseline) and compare what they learned: accuracy, confusion, the separability of each "
    "layer's features and aligned 2-D projections you can select in."
)

folder = settings.checkpoints_dir
entries = library.library(folder)
rows = library.library_rows(entries)
st.subheader("Checkpoint library")
st.caption(f"Folder: `{folder}` · {len(rows)} checkpoint(s)")
if rows:
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_order=["name", "method", "architecture", "dataset", "test accuracy", "test macro-F1"], column_config=widgets.metric_columns())
else:
    st.info("The library is empty. Train the demo models with `make checkpoints`, or upload one on the Checkpoints page.")

st.subheader("Pages")
st.page_link("app_pages/01_Checkpoints.py", label="Checkpoints: the library, training history, upload and delete")
st.page_link("app_pages/02_Explore.py", label="Explore: one model's projection, selections, confusion and layer separability")
st.page_link("app_pages/03_Compare.py", label="Compare: 2-3 models side by side, linked selections, deltas, McNemar, downloads")
