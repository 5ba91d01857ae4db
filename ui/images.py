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

    ``split``: the data (a :class:`asl_core.data.Split`; only the images shown are read, one by one); ``labels``/``preds``/``confidence`` are
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
        images.append(to_image(split.image(row_of_split[sid]).numpy()))
        t, p = int(labels[r]), int(preds[r])
        mark = "✓" if t == p else "✗"
        captions.append(f"#{sid} {mark} true {class_names[t]} · pred {class_names[p]} · {float(confidence[r]):.2f}")
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(img, caption=cap, width="stretch")


def compare_inspector(split, ids: list[int], models, class_names, columns: int = 8) -> None:
    """Like ``inspector`` for several models: each caption gives the true class and every model's
    prediction (✓/✗) and confidence. ``models``: ``ModelAnalysis`` objects (same samples)."""
    if not ids:
        return
    ref = models[0].features
    row_of_feature = {int(s): i for i, s in enumerate(np.asarray(ref.index))}
    row_of_split = {int(s): i for i, s in enumerate(split.index.tolist())}
    shown = [i for i in ids if i in row_of_feature and i in row_of_split][:MAX_SHOWN]
    if len(ids) > len(shown):
        st.caption(f"Showing {len(shown)} of {len(ids)} highlighted samples.")
    for start in range(0, len(shown), columns):
        cols = st.columns(columns)
        for col, sid in zip(cols, shown[start : start + columns]):
            r = row_of_feature[sid]
            t = int(ref.labels[r])
            parts = [f"#{sid} true {class_names[t]}"]
            for m in models:
                p = int(m.features.preds[r])
                parts.append(f"{m.name} {class_names[p]} {'✓' if p == t else '✗'} {float(m.features.confidence[r]):.2f}")
            col.image(to_image(split.image(row_of_split[sid]).numpy()), width="stretch")
            col.caption("  \n".join(parts))


def neighbour_strip(split, neighbourhood, class_names, columns: int = 9) -> None:
    """The sample itself, then its nearest neighbours in one model, nearest first, each with its
    true class and distance (✗ when the neighbour's class differs from the sample's)."""
    row_of_split = {int(s): i for i, s in enumerate(split.index.tolist())}
    items = [(neighbourhood.sample, neighbourhood.label, None)] + list(
        zip(neighbourhood.samples, neighbourhood.labels, neighbourhood.distances))
    cols = st.columns(columns)
    for j, (sid, label, dist) in enumerate(items[:columns]):
        if sid not in row_of_split:
            continue
        cap = (f"#{sid} (the sample) · {class_names[label]}" if dist is None else
               f"#{sid} · {class_names[label]}{'' if label == neighbourhood.label else ' ✗'} · d {dist:.2f}")
        cols[j].image(to_image(split.image(row_of_split[sid]).numpy()), width="stretch")
        cols[j].caption(cap)
