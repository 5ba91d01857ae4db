"""The streaming data layer on small generated folders: the bad-file zoo, 1,000 classes, the
manifest reused on a second start, streamed training, and a cached Compare that decodes nothing.
(The sharded extraction of a folder runs with the gloo checks in tests/distributed.)"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asl_core.data import DatasetSpec, build_splits, known_datasets
from asl_core.data import manifest as manifest_mod
from asl_core.data import sources
from asl_core.data.loading import split_loader
from asl_core.testkit.images import write_folder
from asl_core.engine.options import InferenceOptions


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write_zoo(folder: Path) -> dict[str, str]:
    """Every kind of bad or odd file in one class folder; returns the skipped ones with the reason."""
    gray = Image.fromarray(np.full((10, 10), 128, np.uint8))
    rgb = Image.fromarray(np.full((10, 10, 3), 200, np.uint8))
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"hello, not an image at all")
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (folder / "cut.jpg").write_bytes(_encoded(noise, "JPEG")[:-200])  # cut inside the scan data
    (folder / "cut.png").write_bytes(_encoded(rgb, "PNG")[:-20])
    (folder / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    # converted, not skipped:
    (folder / "png_named.jpg").write_bytes(_encoded(rgb, "PNG"))  # a wrong extension
    Image.fromarray(np.full((10, 10), 32768, np.uint16)).save(folder / "sixteen.png")  # 16-bit gray
    rgb.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    pal = rgb.convert("P")
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png", transparency=0)
    frames = [gray, Image.fromarray(np.zeros((10, 10), np.uint8))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return {"zero.png": "zero bytes", "text.jpg": "not an image", "cut.jpg": "truncated", "cut.png": "truncated",
            "bomb.png": "decompression-bomb"}


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "cache"))  # manifests go to a fresh cache
    return tmp_path / "cache"


def test_bad_file_zoo_is_skipped_or_converted_never_an_abort(tmp_path, cache_env):
    root = write_folder(tmp_path / "zoo", ["a", "b"], per_class=6)
    skipped = write_zoo(root / "a")
    spec = DatasetSpec(source="folder", root=str(root), image_size=8, val_per_class=1, test_per_class=1)
    splits = build_splits(spec)
    m = manifest_mod.scan(root)
    reasons = {Path(p).name: why for p, why in m.skipped}
    assert reasons.keys() == skipped.keys()
    for name, why in skipped.items():
        assert why in reasons[name], (name, reasons[name])
    kept = {Path(str(p)).name for p in m.paths}
    assert {"png_named.jpg", "sixteen.png", "cmyk.jpg", "palette.png", "animated.gif"} <= kept
    # named in the dataset's notes (what the CLI prints and a checkpoint records)
    note = " ".join(splits.notes)
    assert "skipped 5 of 22 files" in note and "a/zero.png (zero bytes)" in note
    # every kept file decodes to the requested shape; the converted ones with sensible values
    src = sources.open_source(spec)
    paths = [str(p) for p in m.paths]
    for i in range(len(src)):
        x = src.load(i)
        assert x.shape == (3, 8, 8) and torch.isfinite(x).all() and 0 <= float(x.min()) <= float(x.max()) <= 1
    sixteen = src.load(paths.index("a/sixteen.png"))
    assert abs(float(sixteen.mean()) - 0.5) < 0.01  # 32768 of 65535, not clipped to white
    assert float(src.load(paths.index("a/animated.gif")).mean()) > 0.4  # the first frame (gray), not the black one
    # the whole split streams through the DataLoader
    n = sum(x.shape[0] for x, _, _ in split_loader(splits.train, batch_size=4, workers=0))
    assert n == len(splits.train)


def test_a_thousand_class_folder(tmp_path, cache_env):
    root = tmp_path / "many"
    tiny = _encoded(Image.fromarray(np.full((4, 4, 3), 90, np.uint8)), "PNG")
    names = [f"n{c:05d}" for c in range(1000)]
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(tiny)
    spec = DatasetSpec(source="folder", root=str(root), image_size=4, val_per_class=1, test_per_class=1)
    splits = build_splits(spec)
    assert splits.num_classes == 1000 and splits.class_names == tuple(names)
    assert len(splits.train) == len(splits.val) == len(splits.test) == 1000
    assert splits.train.streamed and splits.input_shape == (3, 4, 4)
    assert sorted(splits.test.y.tolist()) == list(range(1000))
    found = [k for k in known_datasets([tmp_path]) if k.key == f"folder:{root.resolve()}"]
    assert found and "1000 classes" in found[0].label  # discovery uses the loader's own class rule


def test_manifest_is_reused_on_a_second_start_and_redone_when_the_folder_changes(tmp_path, cache_env, monkeypatch):
    root = write_folder(tmp_path / "data", ["x", "y"], per_class=4)
    first = manifest_mod.scan(root)
    assert not first.from_cache and len(first) == 8
    assert list(cache_env.glob("manifests/*.npz"))

    def no_checks(*a, **k):
        raise AssertionError("a cached manifest must not open the images again")

    monkeypatch.setattr(manifest_mod, "check_image", no_checks)
    second = manifest_mod.scan(root)
    assert second.from_cache and second.signature == first.signature
    assert list(second.paths) == list(first.paths) and second.labels.tolist() == first.labels.tolist()
    monkeypatch.undo()
    write_folder(tmp_path / "extra", ["x"], per_class=1)
    (tmp_path / "extra" / "x" / "000.png").rename(root / "x" / "new.png")  # a new file: its folder's mtime moves
    third = manifest_mod.scan(root)
    assert not third.from_cache and len(third) == 9


def test_streamed_training_and_a_cached_compare_that_decodes_nothing(tmp_path, cache_env, monkeypatch):
    from asl_core.engine import analysis
    from asl_core.engine.cache import DiskCache
    from asl_core.training import TrainConfig, train

    root = write_folder(tmp_path / "folder", ["cat", "dog", "eel"], per_class=10, size=16)
    spec = DatasetSpec(source="folder", root=str(root), image_size=16, val_per_class=2, test_per_class=3)
    result = train(TrainConfig(epochs=1, seed=0, device="cpu", batch_size=8), spec, progress=False)
    from asl_core.checkpoint import LoadedCheckpoint

    ckpt = LoadedCheckpoint(model=result.model, meta=result.meta)
    assert result.meta.input_shape == (3, 16, 16) and result.meta.num_classes == 3
    cache = DiskCache(tmp_path / "features-cache")
    messages = []
    first = analysis.compare([ckpt], cache=cache, progress=lambda m, f: messages.append(m),
                             options=InferenceOptions(device="cpu"))
    assert any("of 9 images" in m for m in messages), messages  # the stage, images done and total

    # a fresh start: no in-process splits; any decode or split build now fails the test
    analysis._splits_for_key.cache_clear()
    before = sources.decoded_count()

    def no_decoding(*a, **k):
        raise AssertionError("a cached Compare must not decode an image")

    monkeypatch.setattr(sources.FolderSource, "load", no_decoding)
    monkeypatch.setattr(analysis, "splits_for", no_decoding)
    again = analysis.compare([ckpt], cache=DiskCache(tmp_path / "features-cache"),
                             options=InferenceOptions(device="cpu"))
    assert sources.decoded_count() == before
    np.testing.assert_array_equal(again.reference.features.preds, first.reference.features.preds)
    assert again.class_names == ("cat", "dog", "eel")
