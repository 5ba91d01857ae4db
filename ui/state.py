"""Every session-state and widget key the app uses, named once.

Widget keys double as the handles tests drive pages by (``at.selectbox(key=...)``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

# --- plain session state
PENDING_DELETE = "pending_delete"          # checkpoint file name awaiting confirmation
FLASH = "flash"                            # (kind, message) shown once after a rerun
COMPARE_CELL = "compare_cell"              # (true, pred) of the clicked confusion cell, or None
COMPARE_CELL_SOURCE = "compare_cell_src"   # which model's matrix the cell came from

DEFAULTS: dict[str, Any] = {PENDING_DELETE: None, FLASH: None, COMPARE_CELL: None, COMPARE_CELL_SOURCE: None}

# --- widget keys: Checkpoints
CKPT_SELECT = "ckpt_select"
CKPT_UPLOAD = "ckpt_upload"
CKPT_UPLOAD_ARCH = "ckpt_upload_arch"
CKPT_UPLOAD_CLASSES = "ckpt_upload_classes"
CKPT_UPLOAD_DATASET = "ckpt_upload_dataset"
CKPT_UPLOAD_NAME = "ckpt_upload_name"
CKPT_UPLOAD_SUBMIT = "ckpt_upload_submit"
CKPT_DELETE = "ckpt_delete"
CKPT_DELETE_CONFIRM = "ckpt_delete_confirm"
CKPT_DELETE_CANCEL = "ckpt_delete_cancel"

# --- widget keys: Explore
EXP_MODEL = "exp_model"
EXP_SPLIT = "exp_split"
EXP_LAYER = "exp_layer"
EXP_COLOR = "exp_color"
EXP_SCATTER = "exp_scatter"
PROJ_PREFIX_EXPLORE = "exp_proj"

# --- widget keys: Compare
CMP_MODELS = "cmp_models"
CMP_SPLIT = "cmp_split"
CMP_LAYER = "cmp_layer"
CMP_COLOR = "cmp_color"
CMP_CLEAR = "cmp_clear"
PROJ_PREFIX_COMPARE = "cmp_proj"


def scatter_key(prefix: str, i: int) -> str:
    return f"{prefix}_scatter_{i}"


def confusion_key(prefix: str, i: int) -> str:
    return f"{prefix}_confusion_{i}"


def init_state() -> None:
    """Initialise every plain key once per session."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value


def flash(kind: str, message: str) -> None:
    """Keep a message across the rerun that follows an action."""
    st.session_state[FLASH] = (kind, message)


def show_flash() -> None:
    item = st.session_state.get(FLASH)
    if item:
        kind, message = item
        getattr(st, kind, st.info)(message)
        st.session_state[FLASH] = None
