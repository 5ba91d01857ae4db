"""Running the engine's ``compare`` from a page: cached in memory per (files, parameters),
on disk by the engine (``DiskCache`` under ``ASL_LENS_CACHE``), with a progress bar."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import streamlit as st

from asl_core.engine.analysis import Comparison, ModelAnalysis, common_layers, compare
from asl_core.engine.cache import DiskCache
from asl_core.engine.projection import ProjectionConfig
from asl_core.settings import get_settings
from ui import library

MEMORY_ENTRIES = 6


@st.cache_resource(show_spinner=False)
def _memory() -> tuple[OrderedDict, threading.Lock]:
    """Recent comparisons for all sessions: reruns after a click must not recompute anything.
    A plain store (not a cached function) so that the progress bar is never replayed."""
    return OrderedDict(), threading.Lock()


def disk_cache() -> DiskCache:
    return DiskCache(get_settings().cache_dir)


def run(paths: list[Path], split: str, layer: str | None, config: ProjectionConfig,
        metric_layers: list[str] | None = None) -> Comparison:
    """``compare`` over the checkpoints at ``paths`` (first = reference)."""
    file_keys = [library.file_key(Path(p)) for p in paths]
    key = json.dumps([file_keys, split, layer, config.to_dict(), list(metric_layers or [])], default=str)
    store, lock = _memory()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    ckpts = [library.load_model(Path(p)) for p in paths]
    holder = st.empty()

    def progress(message: str, fraction: float) -> None:
        holder.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    try:
        result = compare(ckpts, split=split, layer=layer, projection=config, cache=disk_cache(), progress=progress,
                         metric_layers=metric_layers)
    finally:
        holder.empty()
    with lock:
        store[key] = result
        while len(store) > MEMORY_ENTRIES:
            store.popitem(last=False)
    return result


def shared_layers(paths: list[Path]) -> list[str]:
    return common_layers([library.load_model(Path(p)) for p in paths])


# --------------------------------------------------------------------------- per-view arrays


def view_arrays(m: ModelAnalysis) -> dict[str, np.ndarray]:
    """The projected rows of one model: coords, labels, preds, confidence, sample index."""
    rows = m.projection.sample
    f = m.features
    return {"coords": m.projection.coords, "labels": f.labels[rows], "preds": f.preds[rows],
            "confidence": f.confidence[rows], "index": f.index[rows]}


def cell_samples(m: ModelAnalysis, true: int, pred: int) -> list[int]:
    """Dataset sample indices with true class ``true`` that ``m`` predicted as ``pred``."""
    f = m.features
    return sorted(int(i) for i in f.index[(f.labels == true) & (f.preds == pred)])


# --------------------------------------------------------------------------- derived, memoised per comparison

_DERIVED: OrderedDict = OrderedDict()
_DERIVED_LOCK = threading.Lock()


def _derived(cmp: Comparison, what: str, make):
    """``make()`` once per comparison object (the comparison is held in the entry, so its id is
    not reused while the entry lives): reruns after a click recompute nothing."""
    key = (id(cmp), what)
    with _DERIVED_LOCK:
        if key in _DERIVED:
            _DERIVED.move_to_end(key)
            return _DERIVED[key][1]
    value = make()
    with _DERIVED_LOCK:
        _DERIVED[key] = (cmp, value)
        while len(_DERIVED) > 8 * MEMORY_ENTRIES:
            _DERIVED.popitem(last=False)
    return value


def headlines(cmp: Comparison) -> list:
    from asl_core.engine.story import headline

    return _derived(cmp, "headlines", lambda: [headline(cmp, m) for m in cmp.models[1:]])


def per_class(cmp: Comparison) -> list[dict]:
    from asl_core.engine.story import per_class_rows

    return _derived(cmp, "per_class", lambda: per_class_rows(cmp))


def samples(cmp: Comparison):
    from asl_core.report.tables import sample_table

    return _derived(cmp, "samples", lambda: sample_table(cmp))


def neighbours(cmp: Comparison, sample_id: int, k: int) -> list:
    from asl_core.engine.story import neighbours as find

    return _derived(cmp, f"neighbours {sample_id} {k}", lambda: find(cmp, sample_id, k))


# --------------------------------------------------------------------------- between two models (the Compare panels)


def cluster_order(cmp: Comparison) -> list[int]:
    from asl_core.engine.between import cluster_order as order

    return _derived(cmp, "cluster_order", lambda: order(cmp.reference.confusion + sum(m.confusion for m in cmp.models[1:])))


def most_changed_classes(cmp: Comparison, n: int) -> list[int]:
    """The ``n`` classes whose recall changed most in any compared model, largest first."""
    def make():
        rec = np.array([m.metrics["per_class_recall"] for m in cmp.models], dtype=float)
        change = np.abs(rec[1:] - rec[0]).max(0)
        return [int(c) for c in np.argsort(-change, kind="stable")[:n]]
    return _derived(cmp, f"most_changed {n}", make)


def pairs(cmp: Comparison, b: ModelAnalysis) -> list[dict]:
    from asl_core.engine.between import confused_pairs

    ref = cmp.reference
    return _derived(cmp, f"pairs {b.name}", lambda: confused_pairs(ref.features.labels, ref.features.preds, b.features.preds,
                                                                   cmp.num_classes))


def overlap(cmp: Comparison, b: ModelAnalysis, k: int) -> np.ndarray:
    from asl_core.engine.between import neighbourhood_overlap

    ref = cmp.reference
    return _derived(cmp, f"overlap {b.name} {k}", lambda: neighbourhood_overlap(
        ref.features.layers[cmp.layer], b.features.layers[cmp.layer], k))


def clusters(cmp: Comparison, b: ModelAnalysis, n: int):
    from asl_core.engine.between import regression_clusters

    ref = cmp.reference
    seed = cmp.projection_config.seed
    return _derived(cmp, f"clusters {b.name} {n}", lambda: regression_clusters(
        ref.features.layers[cmp.layer], ref.features.correct, b.features.correct, ref.features.labels, n, seed=seed))


def layer_similarity(cmp: Comparison, b: ModelAnalysis) -> dict:
    """Linear CKA between every shared layer of the reference and ``b`` and each model's
    separability over its top-level layers; every layer is extracted once (cached on disk)."""
    from asl_core.data import DatasetSpec
    from asl_core.engine.analysis import splits_for
    from asl_core.engine.between import cka_matrix
    from asl_core.engine.cache import cached_features, cached_separability

    def make():
        paths = st.session_state.get("_cmp_paths") or []
        from asl_core.engine.cache import checkpoint_hash
        from asl_core.errors import UserError

        by_hash = {checkpoint_hash(c): c for c in (library.load_model(Path(p)) for p in paths)}
        if cmp.reference.content_hash not in by_hash or b.content_hash not in by_hash:
            raise UserError("the models of this comparison are no longer the chosen ones; reload the page")
        ckpts = [by_hash[m.content_hash] for m in (cmp.reference, b)]
        layers = common_layers(ckpts)
        spec = DatasetSpec.from_dict(dict(cmp.dataset))
        splits = splits_for(spec)
        feats = [cached_features(disk_cache(), c, spec, cmp.split, layers, splits=splits) for c in ckpts]
        cka, how = cka_matrix({n: feats[0].layers[n] for n in layers}, {n: feats[1].layers[n] for n in layers})
        depth = [n for n in layers if "." not in n] or layers
        sep = {}
        for m, c, f in zip((cmp.reference, b), ckpts, feats):
            per_layer = [cached_separability(disk_cache(), c, spec, cmp.split, n, f.layers[n], f.labels,
                                             cmp.projection_config.seed) for n in depth]
            sep[m.name] = {k: [float(s[k]) for s in per_layer] for k in ("knn_accuracy", "silhouette")}
        return {"layers_a": layers, "layers_b": layers, "cka": cka, "how": how, "depth_layers": depth, "separability": sep}

    return _derived(cmp, f"layer_similarity {b.name}", make)
