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


RIGHT, WRONG = ":green[✓]", ":red[✗]"  # in colour: the same grey ✓ and ✗ read alike


def spread(ids: list[int], label_of: dict[int, int], n: int = MAX_SHOWN) -> list[int]:
    """Up to ``n`` of ``ids`` taken in turn from each class (rarest class first in each round), so a
    large selection shows every class it holds, not its first ``n`` ids (all of one class)."""
    by_class: dict[int, list[int]] = {}
    for i in ids:
        by_class.setdefault(label_of[i], []).append(i)
    queues = sorted(by_class.values(), key=len)
    out: list[int] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


def shown_caption(n_shown: int, n_ids: int, n_classes: int) -> str:
    return (f"Showing {n_shown} of {n_ids} highlighted samples (at most {MAX_SHOWN} images), taken in turn from each of "
            f"their {n_classes} classes.")


def inspector(split, ids: list[int], labels: np.ndarray, preds: np.ndarray, confidence: np.ndarray,
              sample_index: np.ndarray, class_names, columns: int = 10) -> None:
    """Show up to ``MAX_SHOWN`` samples ``ids`` (dataset sample indices).

    ``split``: the data (a :class:`asl_core.data.Split`; only the images shown are read, one by one); ``labels``/``preds``/``confidence`` are
    per row of ``sample_index`` (the features' sample indices)."""
    if not ids:
        return
    row_of_feature = {int(s): i for i, s in enumerate(np.asarray(sample_index))}
    row_of_split = {int(s): i for i, s in enumerate(split.index.tolist())}
    known = [i for i in ids if i in row_of_feature and i in row_of_split]
    label_of = {i: int(labels[row_of_feature[i]]) for i in known}
    shown = spread(known, label_of)
    if len(ids) > len(shown):
        st.caption(shown_caption(len(shown), len(ids), len(set(label_of.values()))))
    images, captions = [], []
    for sid in shown:
        r = row_of_feature[sid]
        images.append(to_image(split.image(row_of_split[sid]).numpy()))
        t, p = int(labels[r]), int(preds[r])
        mark = RIGHT if t == p else WRONG
        captions.append(f"#{sid} {mark} true {class_names[t]} · pred {class_names[p]} · {float(confidence[r]):.2f}")
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            col.image(img, width="stretch")
            col.caption(cap)


def compare_inspector(split, ids: list[int], models, class_names, columns: int = 8) -> None:
    """Like ``inspector`` for several models: each caption gives the true class and every model's
    prediction (✓/✗) and confidence. ``models``: ``ModelAnalysis`` objects (same samples)."""
    if not ids:
        return
    ref = models[0].features
    row_of_feature = {int(s): i for i, s in enumerate(np.asarray(ref.index))}
    row_of_split = {int(s): i for i, s in enumerate(split.index.tolist())}
    known = [i for i in ids if i in row_of_feature and i in row_of_split]
    label_of = {i: int(ref.labels[row_of_feature[i]]) for i in known}
    shown = spread(known, label_of)
    if len(ids) > len(shown):
        st.caption(shown_caption(len(shown), len(ids), len(set(label_of.values()))))
    for start in range(0, len(shown), columns):
        cols = st.columns(columns)
        for col, sid in zip(cols, shown[start : start + columns]):
            r = row_of_feature[sid]
            t = int(ref.labels[r])
            parts = [f"#{sid} true {class_names[t]}"]
            for m in models:
                p = int(m.features.preds[r])
                parts.append(f"{m.name} {class_names[p]} {RIGHT if p == t else WRONG} {float(m.features.confidence[r]):.2f}")
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
