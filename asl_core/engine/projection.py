"""2-D projections (PCA, t-SNE, UMAP) of representations, aligned across models.

Every projection is seeded, standardises the features first (optional), may reduce them
with PCA before t-SNE/UMAP, reports its trustworthiness, and says in ``note`` when it shows
a sample smaller than the data. Side-by-side views use the same samples for every model
and are aligned to the first model (Procrustes on the shared samples, or AlignedUMAP).

    proj = project(feats.layers["embedding"], feats.labels, ProjectionConfig(method="umap"))
    proj.coords  # [n, 2]; proj.sample: rows of the features that were projected
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asl_core.engine import gpu_projection
from asl_core.engine.sampling import stratified_sample
from asl_core.engine.metrics import trustworthiness
from asl_core.engine.neighbors import enable_numba_cache, knn_graph

METHODS = ("pca", "tsne", "umap")
ALIGNS = ("procrustes", "aligned_umap", "none")


@dataclass(frozen=True)
class ProjectionConfig:
    """Parameters of a projection. ``pca_dims``: PCA pre-reduction before t-SNE/UMAP (None: off);
    ``max_points``: cap on the projected samples (a stratified seeded sample above it);
    ``trust_points``/``trust_k``: sample cap and neighbourhood size of the trustworthiness;
    ``umap_epochs``: UMAP's layout epochs (None: umap-learn's 200-500 by size; 200 measured as
    trustworthy as 500 at half the time, bench/bench_engine.py); ``tsne_exaggeration_iter`` and
    ``tsne_iter``: t-SNE's early-exaggeration and normal iterations (openTSNE's defaults are 250
    and 500; 125 and 250 with its learning rate n/12 measured as trustworthy, at half the time:
    2,000 demo features 0.9949 vs 0.9948, 10k x 512 blobs 0.9577 vs 0.9582)."""

    method: str = "pca"
    seed: int = 0
    standardize: bool = True
    pca_dims: int | None = 50
    perplexity: float = 30.0
    n_neighbors: int = 15
    min_dist: float = 0.1
    max_points: int = 20000
    align: str = "procrustes"
    trust_points: int = 2000
    trust_k: int = 5
    umap_epochs: int | None = 200
    tsne_iter: int = 250
    tsne_exaggeration_iter: int = 125

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.align not in ALIGNS:
            raise ValueError(f"align must be one of {', '.join(ALIGNS)}, got {self.align!r}")
        if self.align == "aligned_umap" and self.method != "umap":
            raise ValueError("align='aligned_umap' needs method='umap'")
        if self.pca_dims is not None and (not isinstance(self.pca_dims, int) or self.pca_dims < 2):
            raise ValueError(f"pca_dims must be None or an integer >= 2, got {self.pca_dims!r}")
        checks = [
            (isinstance(self.seed, int) and self.seed >= 0, "seed must be an integer >= 0"),
            (math.isfinite(self.perplexity) and self.perplexity > 0, "perplexity must be > 0"),
            (isinstance(self.n_neighbors, int) and self.n_neighbors >= 2, "n_neighbors must be an integer >= 2"),
            (math.isfinite(self.min_dist) and 0 <= self.min_dist <= 1, "min_dist must be in [0, 1]"),
            (isinstance(self.max_points, int) and self.max_points >= 10, "max_points must be an integer >= 10"),
            (isinstance(self.trust_points, int) and self.trust_points >= 10, "trust_points must be an integer >= 10"),
            (isinstance(self.trust_k, int) and self.trust_k >= 1, "trust_k must be an integer >= 1"),
            (self.umap_epochs is None or (isinstance(self.umap_epochs, int) and self.umap_epochs >= 10),
             "umap_epochs must be None (umap-learn's default) or an integer >= 10"),
            (isinstance(self.tsne_iter, int) and self.tsne_iter >= 50, "tsne_iter must be an integer >= 50"),
            (isinstance(self.tsne_exaggeration_iter, int) and self.tsne_exaggeration_iter >= 0,
             "tsne_exaggeration_iter must be an integer >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Projection:
    """``coords`` ``[n, 2]`` float32 for rows ``sample`` ``[n]`` of the features (``n <= N``);
    ``trustworthiness`` in [0, 1] (NaN when undefined); ``note`` says what was sampled or changed."""

    coords: np.ndarray
    sample: np.ndarray
    trustworthiness: float
    note: str = ""
    method: str = ""
    n_total: int = 0
    backend: str = "cpu"  # "cuml" when t-SNE/UMAP ran on the GPU (asl_core.engine.gpu_projection)


def _check_X(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {X.shape}")
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 samples to project, got {X.shape[0]}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or Inf")
    return X


def _prepare(X: np.ndarray, config: ProjectionConfig) -> np.ndarray:
    """Standardised features, the space the trustworthiness is measured in."""
    if not config.standardize:
        return X.astype(np.float32)
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(X).astype(np.float32)


def _pre_reduce(Z: np.ndarray, config: ProjectionConfig) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = config.pca_dims
    if dims is None or dims >= min(Z.shape):
        return Z
    return PCA(n_components=dims, random_state=config.seed).fit_transform(Z).astype(np.float32)


def _embed(Z: np.ndarray, config: ProjectionConfig, notes: list[str]) -> np.ndarray:
    """``[n, D]`` (already standardised) -> ``[n, 2]``."""
    n = Z.shape[0]
    if config.method == "pca":
        from sklearn.decomposition import PCA

        if Z.shape[1] == 1:
            return np.hstack([Z, np.zeros_like(Z)])
        return PCA(n_components=2, random_state=config.seed).fit_transform(Z)
    Z = _pre_reduce(Z, config)
    if gpu_projection.backend_for(config.method) == "cuml":
        return gpu_projection.embed(Z, config, notes)
    if config.method == "tsne":
        return _tsne(Z, config, notes)
    return _fit_umap(_umap(config, n, notes), Z)


def _tsne(Z: np.ndarray, config: ProjectionConfig, notes: list[str]) -> np.ndarray:
    """openTSNE on the shared k-NN graph (``k = 3 x perplexity``, as openTSNE and scikit-learn
    choose it): Barnes-Hut below 10k points, FFT-accelerated interpolation above (openTSNE's
    own switch), PCA initialisation, ``config.tsne_iter`` iterations after
    ``config.tsne_exaggeration_iter`` exaggerated ones.
    Several times faster than scikit-learn's Barnes-Hut at 10k points (bench/bench_engine.py)."""
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = Z.shape[0]
    perplexity = config.perplexity
    if 3 * perplexity >= n:
        perplexity = max(1.0, (n - 1) / 3)
        notes.append(f"perplexity lowered to {perplexity:.1f} for {n} samples")
    k = min(n - 1, max(1, int(3 * perplexity)))
    idx, dist = knn_graph(Z, k + 1)  # each row starts with the point itself, which openTSNE leaves out
    threads = _threads()
    neighbours = PrecomputedNeighbors(np.array(idx[:, 1:]), np.array(dist[:, 1:]))
    with _quiet_opentsne():
        affinities = PerplexityBasedNN(knn_index=neighbours, perplexity=perplexity, n_jobs=threads,
                                       random_state=config.seed)
        tsne = TSNE(n_iter=config.tsne_iter, early_exaggeration_iter=config.tsne_exaggeration_iter, n_jobs=threads,
                    random_state=config.seed)
        from openTSNE import initialization

        init = initialization.pca(Z, random_state=config.seed)
        return np.asarray(tsne.fit(affinities=affinities, initialization=init))


def _quiet_opentsne():
    """openTSNE logs a warning when the perplexity is lowered; ``notes`` says so already."""
    from asl_core.runtime import quiet_logger

    return quiet_logger("openTSNE")


def _threads() -> int:
    """This process's thread budget (:mod:`asl_core.runtime`), for openTSNE's gradient."""
    from asl_core.runtime import current_threads

    return current_threads()


def _umap(config: ProjectionConfig, n: int, notes: list[str], aligned: bool = False):
    enable_numba_cache()  # before umap-learn is imported: its compiled code is loaded, not rebuilt
    import umap

    k = config.n_neighbors
    if k >= n:
        k = max(2, n - 1)
        notes.append(f"n_neighbors lowered to {k} for {n} samples")
    params = dict(n_components=2, n_neighbors=k, min_dist=config.min_dist, random_state=config.seed,
                  n_epochs=config.umap_epochs)
    if aligned:
        return umap.AlignedUMAP(**params)
    # a seed makes umap-learn single-threaded anyway; saying so up front keeps it quiet
    return umap.UMAP(**params, n_jobs=1)


def _fit_umap(mapper, Z: np.ndarray) -> np.ndarray:
    """``mapper.fit_transform(Z)`` on the shared k-NN graph (:func:`knn_graph`): a change of
    ``min_dist``, seed or epochs does not search the neighbours again."""
    idx, dist = knn_graph(Z, mapper.n_neighbors)
    mapper.precomputed_knn = (np.array(idx), np.array(dist))  # copies: umap-learn writes into them
    with warnings.catch_warnings():  # no search index is kept: transform() is never called
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)
        return mapper.fit_transform(Z)


def trust(Z: np.ndarray, coords: np.ndarray, labels, config: ProjectionConfig, notes: list[str]) -> float:
    """Trustworthiness of ``coords`` ``[n, 2]`` against ``Z`` ``[n, D]``, on a stratified
    subsample of ``config.trust_points`` rows when ``n`` is larger (noted)."""

    n = Z.shape[0]
    rows = stratified_sample(labels, config.trust_points, config.seed)
    if rows.size < n:
        notes.append(f"trustworthiness on {rows.size} of {n} points")
    k = min(config.trust_k, (rows.size - 1) // 2)
    if k < 1:
        return float("nan")
    return float(trustworthiness(Z[rows], coords[rows], n_neighbors=k))


def _sample_note(n: int, total: int, seed: int) -> list[str]:
    return [] if n == total else [f"showing a stratified sample of {n} of {total} samples (seed {seed})"]


def project(X, labels, config: ProjectionConfig = ProjectionConfig()) -> Projection:
    """Project ``X`` ``[N, D]`` (labels ``[N]`` drive the stratified sample) to 2-D."""
    X = _check_X(X)
    labels = np.asarray(labels)
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {X.shape[0]} samples")
    sample = stratified_sample(labels, config.max_points, config.seed)
    notes = _sample_note(sample.size, X.shape[0], config.seed)
    Z = _prepare(X[sample], config)
    coords = np.asarray(_embed(Z, config, notes), dtype=np.float32)
    t = trust(Z, coords, labels[sample], config, notes)
    return Projection(coords, sample, t, "; ".join(notes), config.method, X.shape[0],
                      gpu_projection.backend_for(config.method))


def align_to(reference: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``coords`` ``[n, 2]`` rotated/reflected, scaled and shifted onto ``reference`` ``[n, 2]``
    (orthogonal Procrustes with a scale). The reference itself is left as it is."""
    from scipy.linalg import orthogonal_procrustes

    ref, c = np.asarray(reference, dtype=np.float64), np.asarray(coords, dtype=np.float64)
    if ref.shape != c.shape:
        raise ValueError(f"cannot align {c.shape} onto {ref.shape}")
    mu_r, mu_c = ref.mean(axis=0), c.mean(axis=0)
    rc, cc = ref - mu_r, c - mu_c
    norm = float((cc**2).sum())
    if norm == 0:
        return np.broadcast_to(mu_r, c.shape).astype(np.float32)
    rotation, singular_sum = orthogonal_procrustes(cc, rc)
    return ((singular_sum / norm) * cc @ rotation + mu_r).astype(np.float32)


def project_aligned(Xs: list, labels, config: ProjectionConfig = ProjectionConfig(),
                    on_model: Callable[[int, int], None] | None = None) -> list[Projection]:
    """One projection per model over the same samples, aligned to the first model's.

    ``Xs``: one ``[N, D_m]`` per model (same rows, dimensions may differ). ``on_model(done, total)``
    after each model's embedding (AlignedUMAP embeds them all at once: called once, at the end)."""
    if not Xs:
        raise ValueError("need at least one feature matrix")
    Xs = [_check_X(X) for X in Xs]
    labels = np.asarray(labels)
    n = Xs[0].shape[0]
    if any(X.shape[0] != n for X in Xs) or labels.shape[0] != n:
        raise ValueError("every model needs the same samples: " + ", ".join(str(X.shape[0]) for X in Xs))
    sample = stratified_sample(labels, config.max_points, config.seed)
    base_notes = _sample_note(sample.size, n, config.seed)
    Zs = [_prepare(X[sample], config) for X in Xs]
    notes = [list(base_notes) for _ in Xs]
    if config.align == "aligned_umap" and len(Xs) > 1:
        relation = {i: i for i in range(sample.size)}
        mapper = _umap(config, sample.size, notes[0], aligned=True)
        with warnings.catch_warnings():  # AlignedUMAP seeds its inner UMAPs, which then warn about n_jobs
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            mapper.fit([_pre_reduce(Z, config) for Z in Zs], relations=[relation] * (len(Xs) - 1))
        coords = [np.asarray(c, dtype=np.float32) for c in mapper.embeddings_]
        if on_model:
            on_model(len(Xs), len(Xs))
        for extra in notes[1:]:
            extra.extend(notes[0][len(base_notes):])
        for extra in notes:
            extra.append("aligned with AlignedUMAP")
    else:
        coords = []
        for Z, nt in zip(Zs, notes):
            coords.append(np.asarray(_embed(Z, config, nt), dtype=np.float32))
            if on_model:
                on_model(len(coords), len(Zs))
        if config.align == "procrustes":
            coords = [coords[0]] + [align_to(coords[0], c) for c in coords[1:]]
            for nt in notes[1:]:
                nt.append("Procrustes-aligned to the first model")
    out = []
    for Z, c, nt in zip(Zs, coords, notes):
        t = trust(Z, c, labels[sample], config, nt)
        out.append(Projection(c, sample, t, "; ".join(nt), config.method, n,
                              gpu_projection.backend_for(config.method, aligned_umap=config.align == "aligned_umap" and len(Xs) > 1)))
    return out


def warm_up(progress: bool = False) -> float:
    """Compile (or load from the on-disk cache) the numba code of UMAP, so the
    first projection after a server start does not pay for it. ``asl-lens demo`` calls this.
    Returns the seconds it took (a few seconds when the cache is warm, ~20-60 s when cold)."""
    import time

    from asl_core.engine.neighbors import numba_cache_dir

    t0 = time.perf_counter()
    # the server is another process: it loads the compiled code from numba's disk cache itself, so
    # once this cache is filled for these versions there is nothing left to warm (saves ~10 s of
    # every `make demo`, issue 20)
    from importlib.metadata import version

    marker = numba_cache_dir() / f"warm-umap-{version('umap-learn')}-numba-{version('numba')}"
    if marker.exists():
        if progress:
            print(f"projection code already compiled (numba cache: {numba_cache_dir()})", flush=True)
        return 0.0
    rng = np.random.default_rng(0)
    small = rng.normal(size=(300, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 300)
    project(small, labels, ProjectionConfig(method="umap", umap_epochs=10))  # exact neighbours, layout, trust
    # NN-descent is not warmed: its numba code is compiled again in every process anyway (neighbors.py)
    try:
        marker.touch()
    except OSError:
        pass
    seconds = time.perf_counter() - t0
    if progress:
        print(f"projection code ready in {seconds:.1f} s (numba cache: {numba_cache_dir()})", flush=True)
    return seconds
