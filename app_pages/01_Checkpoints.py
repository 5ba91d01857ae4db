"""Checkpoints: the library, one checkpoint's metadata and history, upload, delete."""

from __future__ import annotations

import math

import streamlit as st

from asl_core.report.figures import history_figure
from ui import figmemo, history, library, page, widgets
from ui import state as S
from ui.errors import attempt

settings = page.setup("Checkpoints")
st.title("Checkpoints")
S.show_flash()

folder = settings.checkpoints_dir
entries = library.library(folder)
rows = library.library_rows(entries)
st.caption(f"Library folder: `{folder}` · {len(rows)} checkpoint(s)")

if rows:
    columns = ["name", "method", "architecture", "dataset", "test accuracy", "test macro-F1", "created", "file"]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_order=columns + (["problem"] if any(r["problem"] for r in rows) else []), column_config=widgets.metric_columns())
    files = [r["file"] for r in rows]
    chosen = st.selectbox("Checkpoint", files, key=S.CKPT_SELECT)
    S.show_flash(S.FLASH_DELETE)
    meta = dict(entries)[folder / chosen] if chosen else None
    if isinstance(meta, str):
        st.error(f"{chosen}: {meta}")
    elif meta is not None:
        left, right = st.columns([1, 2])
        with left:
            st.subheader(meta.name or chosen)
            st.json(history.summary(meta), expanded=1)
            history.layers(folder / chosen)
        with right:
            st.subheader("Training history")
            if not meta.history:
                st.info("No training history (foreign weights or an imported checkpoint).")
            else:
                st.plotly_chart(figmemo.memo(history_figure, meta.history, title=""), key=S.CKPT_HISTORY)
            history.mechanism(meta)
    if chosen and not settings.read_only:  # a read-only server shows no delete (the library refuses it too)
        if st.session_state[S.PENDING_DELETE] != chosen:
            if st.button(f"Delete {chosen}", key=S.CKPT_DELETE):
                st.session_state[S.PENDING_DELETE] = chosen
                st.rerun()
        else:
            st.warning(f"Delete {chosen} from the library? This removes the file.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete", key=S.CKPT_DELETE_CONFIRM, type="primary"):
                if attempt(library.delete_checkpoint, folder, chosen) is not None or not (folder / chosen).exists():
                    S.flash("success", f"Deleted {chosen}.", S.FLASH_DELETE)
                st.session_state[S.PENDING_DELETE] = None
                st.rerun()
            if no.button("Cancel", key=S.CKPT_DELETE_CANCEL):
                st.session_state[S.PENDING_DELETE] = None
                st.rerun()
else:
    S.show_flash(S.FLASH_DELETE)  # the last one was just deleted
    st.info("No checkpoints yet: train the demo ones with `make checkpoints`"
            + ("." if settings.read_only else ", or upload one below."))

st.divider()
# --- storage and read-only mode (issue 14)
library.storage_panel(settings)
if settings.read_only:
    st.info("This server is read-only: it shows a fixed set of checkpoints, and uploading or deleting is turned off "
            "(`ASL_LENS_READ_ONLY`).")
    st.stop()
# ---
st.subheader("Add a checkpoint")
limit = max(1, math.ceil(settings.max_upload_mb))  # the widget takes whole MB; the library applies the exact limit
st.caption(f"Our `.safetensors` checkpoints, or someone else's model: a state dict (`.pt`, `.pth`, `.bin`, "
           f"`.safetensors`, Lightning `.ckpt`), a timm train.py checkpoint (`model_best.pth.tar`), a timm hub folder "
           f"as a `.zip` (config.json + model.safetensors), or a `torch.export` archive (`.pt2`, any architecture). "
           f"Nothing in a file is executed. Limit {settings.max_upload_mb:g} MB.")
# outside the form, so that choosing a file shows what it holds (and preselects its architecture) at once
upload = st.file_uploader("Checkpoint file", type=[s.lstrip(".") for s in library.UPLOAD_SUFFIXES],
                          key=S.CKPT_UPLOAD, max_upload_size=limit)
choices_arch = library.architecture_choices()
upload_data, upload_name = (upload.getvalue(), upload.name) if upload is not None else (None, None)
config_upload = None
# what appears once a file is chosen lives in one container, so the form below keeps its place (and
# its elements) from run to run instead of being redrawn while a person fills it in
about_upload = st.container()
if upload is not None and upload.name.lower().endswith((".safetensors", ".bin")) and not library.is_ours(upload_data):
    # only for bare weights: a timm hub folder uploaded as its two files
    config_upload = about_upload.file_uploader("Its config.json, if it comes from a timm hub folder", type=["json"],
                                     key=S.CKPT_UPLOAD_CONFIG,
                                     help="A timm hub folder as two files: model.safetensors or pytorch_model.bin above "
                                          "and its config.json here (or the whole folder as a .zip above).")
if upload is not None and config_upload is not None:
    upload_data, upload_name = library.hub_zip(config_upload.getvalue(), upload.name, upload_data)
if upload is not None:
    level, guessed, about = library.describe_upload(upload_data, upload_name)
    seen = (upload_name, len(upload_data))
    last_seen, last_preselected = st.session_state.get(S.CKPT_UPLOAD_SEEN) or (None, library.ARCH_AUTO)
    if last_seen != seen:  # a new file: preselect what it states or resembles, unless a person chose an architecture
        current = st.session_state.get(S.CKPT_UPLOAD_ARCH, library.ARCH_AUTO)
        preselect = guessed if guessed in choices_arch else library.ARCH_AUTO
        if current in (library.ARCH_AUTO, last_preselected):
            st.session_state[S.CKPT_UPLOAD_ARCH] = preselect
        st.session_state[S.CKPT_UPLOAD_SEEN] = (seen, preselect)
    getattr(about_upload, level)(about)
with st.form("upload_form", clear_on_submit=False):
    c1, c2, c3, c4 = st.columns(4)
    name = c1.text_input("Name in the library", key=S.CKPT_UPLOAD_NAME, placeholder="from the file name")
    arch = c2.selectbox("Architecture (foreign files)", choices_arch, key=S.CKPT_UPLOAD_ARCH,
                        help=f"{len(choices_arch) - 1:,} architectures: ours and every timm model (timm/<name>); type to "
                             "search. 'auto' takes the one the file states (timm checkpoints, hub folders, .pt2).")
    classes = c3.number_input("Classes (0: from the file)", min_value=0, max_value=100000, value=0, step=1,
                              key=S.CKPT_UPLOAD_CLASSES)
    choices = library.dataset_choices(settings.data_roots)
    dataset = c4.selectbox("Dataset (foreign files)", list(choices), key=S.CKPT_UPLOAD_DATASET,
                           format_func=lambda key: choices[key].label if key in choices else key,
                           help="The weights are evaluated on it and Explore/Compare show it. Besides the presets: "
                                "image folders and MNIST/Fashion-MNIST/CIFAR-10 files under the folders the server's "
                                "operator allows (ASL_LENS_DATA_ROOTS).")
    d1, d2, d3 = st.columns([1, 1, 2])
    image_size = d1.number_input("Image side (px)", min_value=8, max_value=512, value=32, step=4,
                                 key=S.CKPT_UPLOAD_IMAGE_SIZE,
                                 help="Image folders and torchvision files are resized to this; presets keep their own size.")
    normalize = d2.selectbox("Mean/std (if not in file)", ["dataset", "imagenet"], key=S.CKPT_UPLOAD_NORMALIZE,
                             format_func={"dataset": "the dataset's", "imagenet": "ImageNet's"}.get,
                             help="A timm config.json or train.py checkpoint states its own input size, mean and std, "
                                  "which are used as they are. Plain weights of a torchvision or timm model usually "
                                  "expect ImageNet's statistics.")
    with d3:
        repeat_gray = st.checkbox("Repeat a grayscale channel for RGB weights", value=True, key=S.CKPT_UPLOAD_REPEAT_GRAY,
                                  help="An RGB model (e.g. a torchvision ResNet) on grayscale data sees the one channel "
                                       "three times; the checkpoint's metadata records it (channel_repeat = 3).")
        use_ema = st.checkbox("Use the EMA weights (timm)", value=True, key=S.CKPT_UPLOAD_EMA,
                              help="timm's train.py keeps an exponential moving average of the weights (state_dict_ema) "
                                   "beside the raw ones; it is usually the better model.")
    submitted = st.form_submit_button("Validate and add", key=S.CKPT_UPLOAD_SUBMIT)
roots = len(settings.data_roots)
st.caption(f"{len(choices)} dataset(s) to choose from: {len(choices) - len(library.preset_names())} found under "
           f"{roots} allowed folder(s)" if roots else
           "Datasets: the presets. An operator can offer image folders and torchvision files by listing their folders "
           "in `ASL_LENS_DATA_ROOTS`.")
# messages about the upload appear here, under the form that caused them
if submitted:
    if upload is None:
        st.error("Choose a file first.")
    else:
        with st.spinner("Validating, and evaluating foreign weights on the chosen dataset..."):
            result = attempt(library.import_upload, upload_data, upload_name, folder, name=name, arch=arch,
                             num_classes=int(classes), dataset=dataset, max_bytes=settings.max_upload_bytes,
                             repeat_gray=bool(repeat_gray), image_size=int(image_size), normalize=normalize,
                             use_ema=bool(use_ema))
        if result is not None:
            S.flash(result.level, result.message, S.FLASH_UPLOAD)
            st.rerun()
S.show_flash(S.FLASH_UPLOAD)
