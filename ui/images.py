"""The inspector: the selected inputs as images with label, prediction and confidence."""

from __future__ import annotations

import numpy as np
import streamlit as st

MAX_SHOWN = 60
TARGET_SIDE = 96


def to_image(x: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``[H', W', C]`` uint8, nearest-upscaled so 8x8 digits are visible."""
    img = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    img = np.transpose(img, (1, 2, 0))
    factor = max(1, TARGET_SIDE // max(img.shape[:2]))
    img = img.repeat(factor, axis=0).repeat(factor, axis=1)
    if img.shape[2] == 1:
        img = img[:, :, 0]
    return (img * 255).round().astype(np.uint8)


def inspector(split, ids: list[int], labels: np.ndarray, preds: np.ndarray, confidence: np.ndarray,
              sample_index: np.ndarray, class_names, columns: int = 10) -> None:
    """Show up to ``MAX_SHOWN`` samples ``ids`` (dataset sample indices).

    ``split``: the data (``x [N, C, H, W]``, ``index [N]``); ``labels``/``preds``/``confidence`` are
    per row of ``sample_index`` (the features' sample indices)."""
    if not ids:
        return
    row_of_feature = {int(s): i for i, s in enumerate(np.asarray(sample_index))}
    row_of_split = {int(s): i for i, s in enumerate(split.index.tolist())}
    shown = [i for i in ids if i in row_of_feature and i in row_of_split][:MAX_SHOWN]
    if len(ids) > len(shown):
        st.caption(f"Showing {len(shown)} of {len(ids)} selected samples.")
    images, captions = [], []
    for sid in shown:
        r = row_of_feature[sid]
        images.append(to_image(split.x[row_of_split[sid]].numpy()))
        t, p = int(labels[r]), int(preds[r])
        mark = "✓" if t == p else "✗"
        captions.append(f"#{sid} {mark} true {class_names[t]} · pred {class_names[p]} · {float(confidence[r]):.2f}")
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(img, caption=cap, width="stretch")
