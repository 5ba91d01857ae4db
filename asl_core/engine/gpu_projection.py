"""t-SNE and UMAP on a GPU with RAPIDS cuML, when it is installed and a GPU is present.

An optional extra, never required: without cuML (or without a GPU, or with
``ASL_LENS_GPU_PROJECTION=off``) :func:`backend_for` says ``"cpu"`` and projections run exactly as
before (scikit-learn / openTSNE / umap-learn). With it, :mod:`asl_core.engine.projection` hands the
embedding step to :func:`embed`; standardisation, the PCA pre-reduction, alignment (Procrustes),
trustworthiness and the disk cache are the same code, and each projection records its backend.

cuML's estimators follow scikit-learn's (``fit_transform`` on a ``[n, d]`` float32 array) and
return a host array when given one. Its t-SNE is Barnes-Hut/FFT like openTSNE's; its UMAP is
the same algorithm as umap-learn but not the same random stream: a seed gives a repeatable
picture on one GPU, not the CPU's picture.

    install: pip install cuml-cu12==26.10.0   (cuml-cu13 for CUDA 13; see docs/SCALING.md)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import numpy as np

from asl_core.settings import get_settings

log = logging.getLogger(__name__)

GPU_METHODS = ("tsne", "umap")


def cuml_available() -> bool:
    """cuML importable and a CUDA GPU present (checked without initialising CUDA when cuML is absent)."""
    if importlib.util.find_spec("cuml") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means the CPU path
        return False


def backend_for(method: str, aligned_umap: bool = False) -> str:
    """``"cuml"`` when ``method`` has a GPU implementation, cuML and a GPU are there and the setting
    allows it; else ``"cpu"``. AlignedUMAP has no cuML counterpart and stays on the CPU."""
    if method not in GPU_METHODS or aligned_umap or not get_settings().gpu_projection:
        return "cpu"
    return "cuml" if cuml_available() else "cpu"


def embed(Z: np.ndarray, config: Any, notes: list[str]) -> np.ndarray:
    """``Z`` ``[n, d]`` -> ``[n, 2]`` with cuML's ``TSNE`` or ``UMAP``. ``config`` is the
    :class:`~asl_core.engine.projection.ProjectionConfig`; a perplexity or neighbourhood too large
    for ``n`` is lowered (and noted) as on the CPU path."""
    manifold = importlib.import_module("cuml.manifold")
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n = Z.shape[0]
    if config.method == "tsne":
        perplexity = config.perplexity
        if perplexity >= n:
            perplexity = max(1.0, (n - 1) / 3)
            notes.append(f"perplexity lowered to {perplexity:.1f} for {n} samples")
        model = manifold.TSNE(n_components=2, perplexity=perplexity, random_state=config.seed)
    elif config.method == "umap":
        k = config.n_neighbors
        if k >= n:
            k = max(2, n - 1)
            notes.append(f"n_neighbors lowered to {k} for {n} samples")
        model = manifold.UMAP(n_components=2, n_neighbors=k, min_dist=config.min_dist, random_state=config.seed)
    else:
        raise ValueError(f"cuML has no {config.method!r} projection here; choose one of {', '.join(GPU_METHODS)}")
    coords = model.fit_transform(Z)
    coords = coords.get() if hasattr(coords, "get") else coords  # a CuPy array when cuML is set to output them
    notes.append(f"{config.method} on the GPU (cuML)")
    return np.asarray(coords, dtype=np.float32)
