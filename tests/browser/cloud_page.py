"""A tiny standalone page for the big-cloud browser test and bench: two linked density views of
synthetic points (``?points=N&color=true|pred|correct|confidence``). Not part of the app."""

import streamlit as st

from asl_core.testkit.clouds import synthetic_views
from ui import cloud
from ui import state as S

st.set_page_config(page_title="cloud", layout="wide")
N = int(st.query_params.get("points", 1_000_000))
COLOR = st.query_params.get("color", "true")
PREFIX = "cloud"
CLASSES = [f"class {c}" for c in range(10)]


@st.cache_resource
def synthetic(n: int, n_views: int = 2):
    return synthetic_views(n, n_views)


data = synthetic(N)
source = st.session_state.get(S.highlight_source_key(PREFIX))
ids = None if source is None else cloud.cloud_ids(PREFIX, source[1], data[source[1]])
st.markdown(f"### selected {0 if ids is None else ids.size} of {N}")
cloud.cloud_row(data, ["view 0", "view 1"], CLASSES, COLOR, ids if ids is not None and ids.size else None, PREFIX,
                source=None if source is None else source[1])
