"""Compare 2-3 models on the same data. First screen: the headline (what changed, and is it
real), aligned projections with linked selections and the clickable confusion matrices. Below,
the panels a user opens (per class, confused pairs, agreement, layer similarity, what moved,
regression clusters, separability, confusion change and flips, the sample table), each computed
and drawn only when open (``ui/compare.py``). Every view setting lives in the URL."""

from __future__ import annotations

import streamlit as st

from ui import analysis, compare, library, page, widgets
from ui import state as S
from ui.errors import user_errors
from ui.urlstate import UrlState

settings = page.setup("Compare")
st.title("Compare models")

files = [p.name for p in library.list_checkpoints(settings.checkpoints_dir)]
if len(files) < 2:
    st.info("Comparing needs at least two checkpoints in the library (see the Checkpoints page).")
    st.stop()

url = UrlState(S.CMP_PREFIX)
with st.sidebar, user_errors():
    side = compare.sidebar(url, files, settings.checkpoints_dir)
for warning in url.warnings:
    st.warning(warning)

with user_errors():
    cmp = analysis.run(side.paths, side.split, side.layer, side.config,
                       metric_layers=list(dict.fromkeys([side.layer, *side.metric_layers])))
split_data = library.split_of(cmp.reference.features, library.load_model(side.paths[0]).meta)
method = widgets.PROJECTION_NAMES.get(side.config.method, side.config.method)
st.caption(f"{cmp.dataset.get('name', '')} · {side.split} split, {len(cmp.reference.features)} samples · "
           f"{cmp.num_classes} classes · layer `{side.layer}` · {method} aligned to {cmp.reference.name} ({side.config.align})")
for note in cmp.notes:
    st.info(note)

compare.headline(cmp)
st.fragment(compare.first_screen)(cmp, url, split_data, side.layer)
compare.download_buttons(cmp)
url.publish()
