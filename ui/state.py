"""Every session-state and widget key the app uses, named once.

Widget keys double as the handles tests drive pages by (``at.selectbox(key=...)``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

# --- plain session state
PENDING_DELETE = "pending_delete"          # checkpoint file name awaiting confirmation
FLASH = "flash"                            # (kind, message, slot) shown once after a rerun

DEFAULTS: dict[str, Any] = {PENDING_DELETE: None, FLASH: None}

# --- widget keys: Checkpoints
CKPT_SELECT = "ckpt_select"
CKPT_HISTORY = "ckpt_history"
CKPT_UPLOAD = "ckpt_upload"
CKPT_UPLOAD_ARCH = "ckpt_upload_arch"
CKPT_UPLOAD_CLASSES = "ckpt_upload_classes"
CKPT_UPLOAD_DATASET = "ckpt_upload_dataset"
CKPT_UPLOAD_NAME = "ckpt_upload_name"
CKPT_UPLOAD_SUBMIT = "ckpt_upload_submit"
CKPT_UPLOAD_REPEAT_GRAY = "ckpt_upload_repeat_gray"
CKPT_UPLOAD_IMAGE_SIZE = "ckpt_upload_image_size"
CKPT_UPLOAD_NORMALIZE = "ckpt_upload_normalize"
CKPT_UPLOAD_CONFIG = "ckpt_upload_config"  # a timm hub folder's config.json, beside its weights file
CKPT_UPLOAD_EMA = "ckpt_upload_ema"
CKPT_UPLOAD_SEEN = "ckpt_upload_seen"  # the upload the architecture was last preselected for
FLASH_UPLOAD = "upload"                    # flash slots: where a message shows, next to what caused it
FLASH_DELETE = "delete"
CKPT_DELETE = "ckpt_delete"
CKPT_DELETE_CONFIRM = "ckpt_delete_confirm"
CKPT_DELETE_CANCEL = "ckpt_delete_cancel"

# --- widget keys: Explore
EXP_MODEL = "exp_model"
EXP_SPLIT = "exp_split"
EXP_LAYER = "exp_layer"
EXP_COLOR = "exp_color"
EXP_NORMALIZED = "exp_normalized"
EXP_SCATTER = "exp_scatter"
EXP_PREFIX = "exp"          # chart keys: exp_scatter_0, exp_confusion_0
EXP_PER_CLASS = "exp_per_class"

# --- widget keys: Compare
CMP_MODELS = "cmp_models"
CMP_SPLIT = "cmp_split"
CMP_LAYER = "cmp_layer"
CMP_COLOR = "cmp_color"
CMP_CLEAR = "cmp_clear"
CMP_NORMALIZED = "cmp_normalized"
CMP_LAYER_BARS = "cmp_layer_bars"
CMP_DL_CSV = "cmp_dl_csv"
CMP_DL_PARQUET = "cmp_dl_parquet"
CMP_DL_FIGURES = "cmp_dl_figures"
CMP_DL_REPORT = "cmp_dl_report"
CMP_METRIC_LAYERS = "cmp_metric_layers"
CMP_PREFIX = "cmp"          # chart keys: cmp_scatter_{i}, cmp_confusion_{i}
CMP_DELTA_METRIC = "cmp_delta_metric"
CMP_TABLE = "cmp_samples"
CMP_F_FLIPPED = "cmp_f_flipped"
CMP_F_WRONG_ALL = "cmp_f_wrong_all"
CMP_F_CLASSES = "cmp_f_classes"
CMP_F_PREDICTED = "cmp_f_predicted"
CMP_F_MODEL = "cmp_f_model"
CMP_F_CONFIDENCE = "cmp_f_confidence"
CMP_HIGHLIGHT_ROWS = "cmp_highlight_rows"
CMP_NEIGHBOURS_K = "cmp_neighbours_k"

# --- scatter look, per page prefix: {prefix}_marker_size, {prefix}_opacity, {prefix}_isolate


def look_key(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def scatter_key(prefix: str, i: int) -> str:
    return f"{prefix}_scatter_{i}"


def confusion_key(prefix: str, i: int) -> str:
    return f"{prefix}_confusion_{i}"


def proj_key(prefix: str, name: str) -> str:
    """Projection widgets: ``exp_proj_method``, ``cmp_proj_perplexity``..."""
    return f"{prefix}_proj_{name}"


def highlight_source_key(prefix: str) -> str:
    """Session key of what drives the highlight: ``("scatter"|"cell", view index)``, ``("table", 0)``
    (rows clicked in the sample table), ``("ids", 0)`` (a list kept under ``highlight_ids_key``: a
    link's ``hl=``, or "highlight these rows") or ``("urlcell", (view, true, pred))`` (a link's ``cell=``)."""
    return f"{prefix}_highlight_source"


def highlight_ids_key(prefix: str) -> str:
    return f"{prefix}_highlight_ids"


def init_state() -> None:
    """Initialise every plain key once per session."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value


def flash(kind: str, message: str, slot: str = "") -> None:
    """Keep a message across the rerun that follows an action; ``slot`` names the place on the
    page it belongs (next to the form or button that caused it), ``""`` the top."""
    st.session_state[FLASH] = (kind, message, slot)


def show_flash(slot: str = "") -> None:
    """Show the pending message if it belongs to ``slot`` (call it where that message should appear)."""
    item = st.session_state.get(FLASH)
    if item:
        kind, message, *rest = item
        if (rest[0] if rest else "") != slot:
            return
        getattr(st, kind, st.info)(message)
        st.session_state[FLASH] = None
CMP_FULL_RUN = "cmp_full_run"  # set when a change inside a fragment needs the whole page
CMP_PANELS = "cmp_panels"          # the panels opened below the first screen
CMP_B = "cmp_b"                    # the model the pairwise panels compare with the reference
CMP_ORDER = "cmp_order"            # confusion matrices: class order (index / clustered)
CMP_ZOOM_START = "cmp_zoom_start"  # confusion matrices: first position of the zoomed block
CMP_ZOOM_SIZE = "cmp_zoom_size"    # confusion matrices: classes in the block
CMP_PAIRS = "cmp_pairs"            # confused-pairs table (row clicks highlight)
CMP_AGREEMENT = "cmp_agreement"    # agreement matrix (cell clicks highlight)
CMP_CLUSTERS = "cmp_clusters"      # regression-clusters table (row clicks highlight)
CMP_N_CLUSTERS = "cmp_n_clusters"
CMP_OVERLAP_K = "cmp_overlap_k"
CMP_OVERLAP_TABLE = "cmp_overlap_table"
CMP_CLASS_PAGE = "cmp_class_page"
CMP_CLASS_SORT = "cmp_class_sort"
CMP_F_OVERLAP = "cmp_f_overlap"


def highlight_title_key(prefix: str) -> str:
    """The listing's title for ids set by a panel (a pair, an agreement cell, a cluster)."""
    return f"{prefix}_highlight_title"
