"""On-disk cache of features and projections, shared between processes.

An entry is two files under ``ROOT/KIND/ab/KEY``: ``KEY.npz`` (arrays; read back with
``allow_pickle=False``, never a pickle) and ``KEY.json`` (small metadata plus the sha256 of
the ``.npz``). Both are written atomically, the ``.json`` last, so a reader sees a whole
entry or none. The key is a sha256 over the checkpoint's content hash, the dataset spec
key, the split, the layers, the parameters and ``ENGINE_VERSION``: new weights give a new
key, so a stale result is never returned. A damaged entry is a miss (logged) and is
recomputed and overwritten.

The root is ``ASL_LENS_CACHE`` when set, else ``.cache/`` in the repository.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asl_core.settings import get_settings
from asl_core.checkpoint import LoadedCheckpoint, atomic_write_bytes, content_hash
from asl_core.data import DatasetSpec, Splits, build_splits
from asl_core.engine.features import Features, extract_features
from asl_core.engine.gpu_projection import backend_for
from asl_core.engine.projection import Projection, ProjectionConfig, project, project_aligned

log = logging.getLogger(__name__)

ENGINE_VERSION = "engine/1"  # bump when extraction or projection results change meaning
def default_root() -> Path:
    """``$ASL_LENS_CACHE``, else ``.cache/`` in the repository (:mod:`asl_core.settings`)."""
    return get_settings().cache_dir


class DiskCache:
    """Content-addressed arrays + JSON on disk. ``get`` returns ``None`` on a miss or a damaged entry."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """sha256 of the canonical JSON of ``parts`` plus the engine version."""
        text = json.dumps({"engine": ENGINE_VERSION, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        folder = self.root / kind / key[:2]
        return folder / f"{key}.npz", folder / f"{key}.json"

    def get(self, kind: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        npz_path, json_path = self._paths(kind, key)
        if not json_path.exists():
            self.misses += 1
            return None
        try:
            info = json.loads(json_path.read_text())
            data = npz_path.read_bytes()
            if hashlib.sha256(data).hexdigest() != info["npz_sha256"]:
                raise ValueError("array file does not match its checksum")
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            meta = info["meta"]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("cache entry %s/%s is damaged (%s); recomputing", kind, key[:12], str(exc)[:120])
            self.misses += 1
            return None
        self.hits += 1
        return arrays, meta

    def delete(self, kind: str, key: str) -> None:
        """Remove an entry if present (the ``.json`` first, so a reader never sees half of one)."""
        for path in reversed(self._paths(kind, key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        npz_path, json_path = self._paths(kind, key)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        try:
            atomic_write_bytes(npz_path, data)
            info = {"engine": ENGINE_VERSION, "npz_sha256": hashlib.sha256(data).hexdigest(), "meta": meta}
            atomic_write_bytes(json_path, json.dumps(info, sort_keys=True, default=str).encode())
        except OSError as exc:  # a read-only or full disk costs speed, not correctness
            log.warning("could not write cache entry %s/%s: %s", kind, key[:12], exc)


def checkpoint_hash(ckpt: LoadedCheckpoint) -> str:
    """The checkpoint's content hash (recomputed from the weights when the meta has none)."""
    return ckpt.meta.content_hash or content_hash(ckpt.model.state_dict(), ckpt.meta)


def _features_key(ckpt: LoadedCheckpoint, spec: DatasetSpec, split_name: str, layers: list[str], amp: str | None,
                  shard: tuple[int, int] | None = None) -> str:
    """The features entry's key; ``shard`` ``(rank, world_size)`` keys one rank's part of a
    distributed extraction (:mod:`asl_core.engine.extract`), which is merged under the plain key."""
    parts = {"kind": "features", "ckpt": checkpoint_hash(ckpt), "data": spec.key(), "split": split_name,
             "layers": list(layers), "amp": amp}
    if shard is not None:
        parts["shard"] = list(shard)
    return DiskCache.key(parts)


def features_to_arrays(f: Features) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {f"layer_{i}": v for i, v in enumerate(f.layers.values())}
    arrays.update(logits=f.logits, preds=f.preds, confidence=f.confidence, labels=f.labels, index=f.index)
    meta = {"layers": list(f.layers), "split": f.split, "batch_size": f.batch_size, "oom_retries": f.oom_retries,
            "device": f.device, "notes": list(f.notes)}
    return arrays, meta


def features_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Features:
    return Features(
        layers={name: arrays[f"layer_{i}"] for i, name in enumerate(meta["layers"])},
        logits=arrays["logits"], preds=arrays["preds"], confidence=arrays["confidence"], labels=arrays["labels"],
        index=arrays["index"], split=meta["split"], batch_size=int(meta["batch_size"]),
        oom_retries=int(meta["oom_retries"]), device=str(meta["device"]), notes=tuple(meta["notes"]),
    )


def cached_features(
    cache: DiskCache | None,
    ckpt: LoadedCheckpoint,
    spec: DatasetSpec,
    split_name: str,
    layers: list[str],
    splits: Splits | None = None,
    device: str = "auto",
    batch_size: int = 256,
    amp: str | None = None,
    channels_last: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Features:
    """``extract_features`` through the cache (``cache=None``: always compute). ``splits`` saves
    rebuilding the data when the caller has it; it must come from ``spec``."""
    layers = list(dict.fromkeys(layers))
    key = _features_key(ckpt, spec, split_name, layers, amp) if cache is not None else ""
    if cache is not None:
        hit = cache.get("features", key)
        if hit is not None:
            try:
                return features_from_arrays(*hit)
            except (KeyError, TypeError, ValueError):
                log.warning("cache entry features/%s has unexpected contents; recomputing", key[:12])
    splits = splits or build_splits(spec)
    feats = extract_features(ckpt, splits.split(split_name), layers, device=device, batch_size=batch_size, amp=amp,
                             channels_last=channels_last, progress=progress, split_name=split_name)
    if cache is not None:
        cache.put("features", key, *features_to_arrays(feats))
    return feats


def _projection_from(arrays: dict[str, np.ndarray], meta: dict[str, Any], i: int) -> Projection:
    return Projection(coords=arrays[f"coords_{i}"], sample=arrays["sample"], trustworthiness=float(meta["trust"][i]),
                      note=str(meta["notes"][i]), method=str(meta["method"]), n_total=int(meta["n_total"]),
                      backend=str(meta.get("backend", "cpu")))


def cached_projections(
    cache: DiskCache | None,
    ckpts: list[LoadedCheckpoint],
    spec: DatasetSpec,
    split_name: str,
    layer: str,
    config: ProjectionConfig,
    xs: list[np.ndarray],
    labels: np.ndarray,
) -> list[Projection]:
    """``project_aligned(xs, labels, config)`` through the cache; ``xs[i]`` are the features of
    ``layer`` from ``ckpts[i]`` on ``split_name`` of ``spec``. Keyed by every model's hash, in order."""
    if len(ckpts) != len(xs):
        raise ValueError(f"{len(ckpts)} checkpoints for {len(xs)} feature matrices")
    if cache is None:
        return project_aligned(xs, labels, config)
    parts = {"kind": "projection", "ckpts": [checkpoint_hash(c) for c in ckpts], "data": spec.key(),
             "split": split_name, "layer": layer, "params": config.to_dict(), "n": int(len(labels))}
    backend = backend_for(config.method, aligned_umap=config.align == "aligned_umap" and len(xs) > 1)
    if backend != "cpu":  # a GPU picture is not the CPU's: its own entry (CPU keys stay as they were)
        parts["backend"] = backend
    key = DiskCache.key(parts)
    hit = cache.get("projections", key)
    if hit is not None:
        try:
            return [_projection_from(*hit, i) for i in range(len(xs))]
        except (KeyError, TypeError, ValueError, IndexError):
            log.warning("cache entry projections/%s has unexpected contents; recomputing", key[:12])
    projs = project_aligned(xs, labels, config)
    arrays = {f"coords_{i}": p.coords for i, p in enumerate(projs)}
    arrays["sample"] = projs[0].sample
    meta = {"trust": [p.trustworthiness for p in projs], "notes": [p.note for p in projs], "method": config.method,
            "n_total": projs[0].n_total, "backend": projs[0].backend}
    cache.put("projections", key, arrays, meta)
    return projs
