"""On-disk cache of features and projections, shared between processes.

An entry is two files under ``ROOT/KIND/ab/KEY``: ``KEY.npz`` (arrays; read back with
``allow_pickle=False``, never a pickle) and ``KEY.json`` (small metadata plus the sha256 of
the ``.npz``). Features are written differently, as they are extracted: a folder ``KEY.d/`` of
``.npy`` files filled batch by batch through memory maps (:class:`MappedWriter`), and read back
mapped (``mmap_mode="r"``), so no process holds an ``[N, D]`` layer in RAM to store or read it;
their ``.json`` records each file's size (a full checksum would read every byte back). Both are written atomically, the ``.json`` last, so a reader sees a whole
entry or none. The key is a sha256 over the checkpoint's content hash, the dataset spec
key, the split, the layers, the parameters and ``ENGINE_VERSION``: new weights give a new
key, so a stale result is never returned. A damaged entry is a miss (logged) and is
recomputed and overwritten.

The root is ``ASL_LENS_CACHE`` when set, else ``.cache/`` in the repository.

Bounded: after each write, when the cache holds more than its cap (``ASL_LENS_CACHE_MAX_MB``),
the least recently used other entries are removed until it is under 80 % of the cap (or none is
left). An entry larger than the whole cap is refused, with a message naming that setting. A read marks
its entry used (the ``.json``'s mtime). A reader holds a shared ``flock`` on the entry's
``.json`` while it reads; eviction takes an exclusive one without waiting and skips an entry
that is being read, so an entry never disappears under a reader. A reader that lost the race
(the entry went just before it locked) sees a miss. Temporary files left by a killed writer
count towards the cap and are removed once they are an hour old.
"""

from __future__ import annotations

import dataclasses
import fcntl
import shutil
import hashlib
import io
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asl_core.settings import get_settings
from asl_core.checkpoint import LoadedCheckpoint, atomic_write_bytes, content_hash
from asl_core.data import DatasetSpec, Splits, build_splits
from asl_core.engine.features import Features, extract_features
from asl_core.engine.options import InferenceOptions
from asl_core.engine.gpu_projection import backend_for
from asl_core.engine.projection import Projection, ProjectionConfig, project_aligned

log = logging.getLogger(__name__)

ENGINE_VERSION = "engine/1"  # bump when extraction or projection results change meaning
LOW_WATER = 0.8  # eviction frees down to this fraction of the cap, so that not every write evicts
STALE_TMP_SECONDS = 3600  # a writer's temporary file older than this was left by a killed process


def default_root() -> Path:
    """``$ASL_LENS_CACHE``, else ``.cache/`` in the repository (:mod:`asl_core.settings`)."""
    return get_settings().cache_dir


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds now: bytes on disk (entries plus stray temporary files), whole
    entries, and the cap in bytes."""

    bytes: int
    entries: int
    max_bytes: int

    @property
    def fraction(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes else 0.0


@dataclass(frozen=True)
class _Entry:
    used: float  # mtime of the .json: written or last read
    size: int
    json_path: Path
    npz_path: Path

    @property
    def dir_path(self) -> Path:
        return self.npz_path.with_suffix(".d")


def _tree_size(path: Path) -> int:
    total = 0
    try:
        for f in os.scandir(path):
            try:
                total += f.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    except OSError:
        return 0
    return total


def too_big_message(nbytes: int, max_bytes: int) -> str:
    from asl_core.settings import CACHE_MAX_ENV

    return (f"not cached: this result ({nbytes / 2**20:.1f} MiB) is larger than the whole cache "
            f"({max_bytes / 2**20:.1f} MiB); raise {CACHE_MAX_ENV} to keep it, or it is computed again on every visit")


class DiskCache:
    """Content-addressed arrays + JSON on disk. ``get`` returns ``None`` on a miss or a damaged
    entry. ``max_bytes`` caps its size (default: ``ASL_LENS_CACHE_MAX_MB``)."""

    def __init__(self, root: str | Path | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.max_bytes = int(max_bytes) if max_bytes is not None else get_settings().cache_max_bytes
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.hits = 0
        self.misses = 0
        self.evictions = 0

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
        try:
            handle = open(json_path, "rb")
        except OSError:  # absent, or evicted a moment ago
            self.misses += 1
            return None
        try:
            with handle:
                # shared lock: eviction (exclusive, non-blocking) skips this entry while we read it
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                if os.fstat(handle.fileno()).st_nlink == 0:  # evicted before we got the lock
                    self.misses += 1
                    return None
                info = json.loads(handle.read())
                if "mapped" in info:
                    arrays = _map_arrays(npz_path.with_suffix(".d"), info["mapped"])
                else:
                    data = npz_path.read_bytes()
                    if hashlib.sha256(data).hexdigest() != info["npz_sha256"]:
                        raise ValueError("array file does not match its checksum")
                    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                        arrays = {name: npz[name] for name in npz.files}
                meta = info["meta"]
                _touch(json_path)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("cache entry %s/%s is damaged or gone (%s); recomputing", kind, key[:12], str(exc)[:120])
            self.misses += 1
            return None
        self.hits += 1
        return arrays, meta

    def delete(self, kind: str, key: str) -> None:
        """Remove an entry if present (the ``.json`` first, so a reader never sees half of one)."""
        npz_path, json_path = self._paths(kind, key)
        for path in (json_path, npz_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        shutil.rmtree(npz_path.with_suffix(".d"), ignore_errors=True)

    def writer(self, kind: str, key: str) -> MappedWriter:
        """A :class:`MappedWriter` for an entry written array by array, batch by batch."""
        return MappedWriter(self, kind, key)

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        npz_path, json_path = self._paths(kind, key)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        info = json.dumps({"engine": ENGINE_VERSION, "npz_sha256": hashlib.sha256(data).hexdigest(), "meta": meta},
                          sort_keys=True, default=str).encode()
        if len(data) + len(info) > self.max_bytes:
            log.warning("cache entry %s/%s: %s", kind, key[:12], too_big_message(len(data) + len(info), self.max_bytes))
            return
        try:
            atomic_write_bytes(npz_path, data)
            atomic_write_bytes(json_path, info)
        except OSError as exc:  # a read-only or full disk costs speed, not correctness
            log.warning("could not write cache entry %s/%s: %s", kind, key[:12], exc)
        self.enforce_cap(keep=json_path)

    # ------------------------------------------------------------------ the cap

    def _scan(self) -> tuple[list[_Entry], int, list[Path]]:
        """Whole entries, the bytes of everything else (orphan arrays, temporary files), and
        temporary files old enough to be a killed writer's."""
        entries, other, stale = [], 0, []
        now = time.time()
        if not self.root.is_dir():
            return entries, other, stale
        for kind_dir in self.root.iterdir():
            if not kind_dir.is_dir():
                continue
            for shard in kind_dir.iterdir():
                if not shard.is_dir():
                    continue
                for f in os.scandir(shard):
                    try:
                        st = f.stat(follow_symlinks=False)
                    except OSError:  # removed by another process while we looked
                        continue
                    name = f.name
                    if f.is_dir(follow_symlinks=False):  # a mapped entry's arrays, or a writer's staging folder
                        if name.startswith(".") or not (shard / (name[:-2] + ".json")).exists():
                            other += _tree_size(Path(f.path))
                            if now - st.st_mtime > STALE_TMP_SECONDS:
                                stale.append(Path(f.path))
                        continue
                    if name.endswith(".json") and not name.startswith("."):
                        npz = shard / (name[:-5] + ".npz")
                        try:
                            npz_size = npz.stat().st_size
                        except OSError:
                            npz_size = _tree_size(shard / (name[:-5] + ".d"))
                        entries.append(_Entry(st.st_mtime, st.st_size + npz_size, Path(f.path), npz))
                    elif name.endswith(".npz") and not name.startswith("."):
                        if not (shard / (name[:-4] + ".json")).exists():
                            other += st.st_size  # an array whose record was never written (killed writer)
                            if now - st.st_mtime > STALE_TMP_SECONDS:
                                stale.append(Path(f.path))
                    else:
                        other += st.st_size
                        if name.endswith(".tmp") and now - st.st_mtime > STALE_TMP_SECONDS:
                            stale.append(Path(f.path))
        return entries, other, stale

    def usage(self) -> CacheUsage:
        entries, other, _ = self._scan()
        return CacheUsage(bytes=sum(e.size for e in entries) + other, entries=len(entries), max_bytes=self.max_bytes)

    def enforce_cap(self, keep: Path | None = None) -> int:
        """Evict least recently used entries until the cache is under ``LOW_WATER`` of its cap
        (only when it is over the cap). Entries being read are skipped. Returns bytes freed."""
        entries, other, stale = self._scan()
        total = sum(e.size for e in entries) + other
        if total <= self.max_bytes:
            return 0
        freed = 0
        for path in stale:
            try:
                if path.is_dir():
                    size = _tree_size(path)
                    shutil.rmtree(path)
                else:
                    size = path.stat().st_size
                    path.unlink()
                freed += size
            except OSError:
                pass
        target = self.max_bytes * LOW_WATER
        for entry in sorted(entries, key=lambda e: e.used):
            if total - freed <= target:
                break
            if entry.json_path == keep:
                continue
            if _remove_unless_read(entry):
                freed += entry.size
                self.evictions += 1
        if total - freed > self.max_bytes:
            log.warning("cache %s is over its cap (%.1f of %.1f MiB): entries are being read", self.root,
                        (total - freed) / 2**20, self.max_bytes / 2**20)
        return freed


def _touch(path: Path) -> None:
    """Mark an entry used (its mtime is the LRU clock); a read-only cache folder just loses the order."""
    try:
        os.utime(path)
    except OSError:
        pass


def _remove_unless_read(entry: _Entry) -> bool:
    """Remove an entry unless a reader holds its lock. The record goes last, as it was written
    last: a reader that finds the record but not the arrays sees a miss."""
    try:
        handle = open(entry.json_path, "rb")
    except OSError:
        return False  # gone already (another process evicted it)
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being read right now
        try:
            entry.npz_path.unlink(missing_ok=True)
            shutil.rmtree(entry.dir_path, ignore_errors=True)  # a reader's open maps stay valid
            entry.json_path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not evict cache entry %s: %s", entry.json_path.name[:12], exc)
            return False
    return True


def _map_arrays(folder: Path, files: dict[str, int]) -> dict[str, np.ndarray]:
    """The arrays of a mapped entry, memory-mapped read-only; a size that differs from the
    record (a damaged or half-evicted entry) is an error, so the caller sees a miss."""
    arrays = {}
    for name, size in files.items():
        path = folder / f"{name}.npy"
        if path.stat().st_size != int(size):
            raise ValueError(f"{path.name} has {path.stat().st_size} bytes; its record says {size}")
        arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
    return arrays


class MappedWriter:
    """Writes one entry as ``.npy`` files through memory maps, in a staging folder that becomes
    ``KEY.d/`` on :meth:`commit`. ``array(name, shape, dtype)`` is a :data:`Sink` for
    :func:`asl_core.engine.features.run_model`. The maps stay readable after commit (and after a
    refusal: the files are unlinked but mapped)."""

    def __init__(self, cache: DiskCache, kind: str, key: str):
        self.cache, self.kind, self.key = cache, kind, key
        npz_path, self.json_path = cache._paths(kind, key)
        self.final = npz_path.with_suffix(".d")
        self.staging = self.final.with_name(f".{key}.d.{os.getpid()}.{id(self)}.tmp")
        self.names: list[str] = []
        self.refused: str | None = None

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        self.staging.mkdir(parents=True, exist_ok=True)
        self.names.append(name)
        return np.lib.format.open_memmap(self.staging / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def add(self, name: str, value: np.ndarray) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        np.save(self.staging / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
        self.names.append(name)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self, meta: dict[str, Any]) -> str | None:
        """Store the entry; returns ``None``, or why it was not stored (too big for the cap)."""
        sizes = {name: (self.staging / f"{name}.npy").stat().st_size for name in self.names}
        total = sum(sizes.values())
        if total > self.cache.max_bytes:
            self.refused = too_big_message(total, self.cache.max_bytes)
            log.warning("cache entry %s/%s: %s", self.kind, self.key[:12], self.refused)
            self.abort()
            return self.refused
        info = json.dumps({"engine": ENGINE_VERSION, "mapped": sizes, "meta": meta}, sort_keys=True, default=str).encode()
        try:
            shutil.rmtree(self.final, ignore_errors=True)  # an older copy of the same entry
            os.replace(self.staging, self.final)
            atomic_write_bytes(self.json_path, info)
        except OSError as exc:  # a read-only or full disk costs speed, not correctness
            log.warning("could not write cache entry %s/%s: %s", self.kind, self.key[:12], exc)
            self.abort()
            return None
        self.cache.enforce_cap(keep=self.json_path)
        return None


def cache_usage(root: str | Path | None = None) -> CacheUsage:
    """Size, entry count and cap of the cache at ``root`` (default: the settings')."""
    return DiskCache(root).usage()


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


def cached_features_only(cache: DiskCache | None, ckpt: LoadedCheckpoint, spec: DatasetSpec, split_name: str,
                         layers: list[str], options: InferenceOptions = InferenceOptions()) -> Features | None:
    """The cached features, or ``None``; touches no data (a cached Compare decodes no image).
    Of ``options`` only ``amp`` is in the key (the rest does not change the numbers)."""
    if cache is None:
        return None
    key = _features_key(ckpt, spec, split_name, list(dict.fromkeys(layers)), options.amp)
    hit = cache.get("features", key)
    if hit is None:
        return None
    try:
        return features_from_arrays(*hit)
    except (KeyError, TypeError, ValueError):
        log.warning("cache entry features/%s has unexpected contents; recomputing", key[:12])
        return None


_SINK_NAMES = {"logits": "logits", "conf": "confidence", "pred": "preds"}


def cached_features(
    cache: DiskCache | None,
    ckpt: LoadedCheckpoint,
    spec: DatasetSpec,
    split_name: str,
    layers: list[str],
    splits: Splits | None = None,
    options: InferenceOptions = InferenceOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> Features:
    """``extract_features`` through the cache (``cache=None``: always compute). The cache is
    looked at before the data is touched; ``splits`` saves rebuilding the data when the caller
    has it (it must come from ``spec``). A miss streams each output into memory-mapped files of
    the new entry as batches come (:class:`MappedWriter`) and returns features mapped from them."""
    layers = list(dict.fromkeys(layers))
    hit = cached_features_only(cache, ckpt, spec, split_name, layers, options)
    if hit is not None:
        return hit
    split = (splits or build_splits(spec)).split(split_name)
    if cache is None:
        return extract_features(ckpt, split, layers, options, progress=progress, split_name=split_name)
    key = _features_key(ckpt, spec, split_name, layers, options.amp)
    writer = cache.writer("features", key)
    names = {f"layer:{name}": f"layer_{i}" for i, name in enumerate(layers)} | _SINK_NAMES
    try:
        feats = extract_features(ckpt, split, layers, options, progress=progress, split_name=split_name,
                                 sink=lambda k, shape, dtype: writer.array(names[k], shape, dtype))
        writer.add("labels", feats.labels)
        writer.add("index", feats.index)
        refused = writer.commit(features_to_arrays(feats)[1])
    except BaseException:
        writer.abort()
        raise
    if refused:
        feats = dataclasses.replace(feats, notes=(*feats.notes, refused))
    return feats


def _projection_from(arrays: dict[str, np.ndarray], meta: dict[str, Any], i: int) -> Projection:
    return Projection(coords=arrays[f"coords_{i}"], sample=arrays["sample"], trustworthiness=float(meta["trust"][i]),
                      note=str(meta["notes"][i]), method=str(meta["method"]), n_total=int(meta["n_total"]),
                      backend=str(meta.get("backend", "cpu")))


def cached_separability(cache: DiskCache | None, ckpt: LoadedCheckpoint, spec: DatasetSpec, split_name: str, layer: str,
                        X: np.ndarray, y: np.ndarray, seed: int = 0, amp: str | None = None) -> dict[str, Any]:
    """:func:`asl_core.engine.metrics.separability` of ``ckpt``'s ``layer`` features ``X`` through the
    cache: its quadratic parts on a 5,000-sample subsample cost seconds per layer and model, and were
    computed again on every fresh Compare (2.0 of a cached 32,000-image Compare's 3.1 s). Keyed by
    what ``X`` was computed from (as its features entry) plus the layer and the seed."""
    from asl_core.engine.metrics import separability

    if cache is None:
        return separability(X, y, seed=seed)
    key = DiskCache.key({"kind": "separability", "ckpt": checkpoint_hash(ckpt), "data": spec.key(), "split": split_name,
                         "layer": layer, "seed": int(seed), "amp": amp, "n": int(len(y))})
    hit = cache.get("separability", key)
    if hit is not None and isinstance(hit[1].get("values"), dict):
        return hit[1]["values"]
    values = separability(X, y, seed=seed)
    cache.put("separability", key, {}, {"values": values})
    return values


def cached_projections(
    cache: DiskCache | None,
    ckpts: list[LoadedCheckpoint],
    spec: DatasetSpec,
    split_name: str,
    layer: str,
    config: ProjectionConfig,
    xs: list[np.ndarray],
    labels: np.ndarray,
    on_model: Callable[[int, int], None] | None = None,
) -> list[Projection]:
    """``project_aligned(xs, labels, config, on_model)`` through the cache; ``xs[i]`` are the features
    of ``layer`` from ``ckpts[i]`` on ``split_name`` of ``spec``. Keyed by every model's hash, in order."""
    if len(ckpts) != len(xs):
        raise ValueError(f"{len(ckpts)} checkpoints for {len(xs)} feature matrices")
    if cache is None:
        return project_aligned(xs, labels, config, on_model)
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
    projs = project_aligned(xs, labels, config, on_model)
    arrays = {f"coords_{i}": p.coords for i, p in enumerate(projs)}
    arrays["sample"] = projs[0].sample
    meta = {"trust": [p.trustworthiness for p in projs], "notes": [p.note for p in projs], "method": config.method,
            "n_total": projs[0].n_total, "backend": projs[0].backend}
    cache.put("projections", key, arrays, meta)
    return projs
