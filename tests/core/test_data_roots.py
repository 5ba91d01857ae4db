"""Datasets an operator allows (ASL_LENS_DATA_ROOTS): discovery, refusal of anything else, and
foreign weights evaluated on an image folder found there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from asl_core import library
from asl_core.checkpoint import load_checkpoint
from asl_core.data import known_datasets, resolve_dataset
from asl_core.errors import DataError, SettingsError
from asl_core.models import build_model
from asl_core.settings import DATA_ROOTS_ENV, Settings


def _image_folder(root, classes=("cat", "dog"), per_class=12, side=10):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((side, side, 3)) * 100 + 120 * c).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_setting_parses_folders_and_names_a_bad_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    s = Settings.from_env({DATA_ROOTS_ENV: f"{a}:{b}:{a}"})
    assert s.data_roots == (a.resolve(), b.resolve())
    assert Settings.from_env({}).data_roots == ()
    with pytest.raises(SettingsError, match=f"{DATA_ROOTS_ENV}: .*missing.* is not an existing folder"):
        Settings.from_env({DATA_ROOTS_ENV: str(tmp_path / "missing")})


def test_discovery_finds_image_folders_and_torchvision_files_only_under_roots(tmp_path):
    root = tmp_path / "data"
    _image_folder(root / "pets")
    for f in ("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-images-idx3-ubyte"):
        (root / "digits" / f).parent.mkdir(parents=True, exist_ok=True)
        (root / "digits" / f).write_bytes(b"")
    (root / "empty").mkdir()
    outside = _image_folder(tmp_path / "secret")
    (root / "escape").symlink_to(outside)  # a link out of the root is not offered
    found = {k.key: k for k in known_datasets((root.resolve(),))}
    assert list(found)[:3] == ["digits", "digits-hard", "mnist-lt"]  # the presets first
    assert f"folder:{root.resolve() / 'pets'}" in found and f"mnist:{root.resolve() / 'digits'}" in found
    assert found[f"folder:{root.resolve() / 'pets'}"].label == "data/pets · image folder, 2 classes"
    assert len(found) == 5, list(found)
    # a key naming a folder outside the roots is refused, whatever it spells
    with pytest.raises(DataError, match="unknown dataset"):
        resolve_dataset(f"folder:{outside}", (root.resolve(),))
    with pytest.raises(DataError, match="ASL_LENS_DATA_ROOTS"):
        resolve_dataset(f"folder:{root.resolve() / 'pets'}", ())


def test_foreign_weights_evaluated_on_an_allowed_image_folder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    pets = _image_folder(root / "pets")
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    torch.manual_seed(0)
    torch.save(build_model("digits_cnn", 2, in_channels=1).state_dict(), tmp_path / "w.pt")
    result = library.import_checkpoint(tmp_path / "w.pt", "w.pt", tmp_path / "lib", arch="digits_cnn", num_classes=2,
                                       dataset=f"folder:{pets.resolve()}", image_size=8)
    meta = load_checkpoint(result.path).meta
    # the folder is read in the model's channel count (grayscale for this 1-channel model), at the asked size
    assert meta.dataset["source"] == "folder" and meta.dataset["channels"] == 1 and meta.input_shape == (1, 8, 8)
    assert meta.class_names == ("cat", "dog") and meta.channel_repeat == 1 and meta.metrics["test"]["n"] == 2


def test_a_checkpoint_naming_data_outside_the_roots_is_refused(tmp_path, monkeypatch):
    import dataclasses

    from asl_core.checkpoint import CheckpointMeta, save_checkpoint
    from asl_core.data import DatasetSpec, get_spec

    root = tmp_path / "data"
    pets = _image_folder(root / "pets")
    model = build_model("digits_cnn", 2, in_channels=1)
    meta = CheckpointMeta(arch="digits_cnn", num_classes=2, class_names=("cat", "dog"), input_shape=(1, 8, 8),
                          mean=(0.5,), std=(0.25,), dataset=DatasetSpec(source="folder", root="/etc", name="x").to_dict())
    evil = save_checkpoint(model, meta, tmp_path / "evil")
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    with pytest.raises(DataError, match="'/etc', which is not under a folder this server allows"):
        library.import_checkpoint(evil, evil.name, tmp_path / "lib")
    inside = save_checkpoint(model, dataclasses.replace(meta, dataset=DatasetSpec(source="folder", root=str(pets),
                                                                                   name="pets").to_dict()), tmp_path / "ok")
    assert library.import_checkpoint(inside, inside.name, tmp_path / "lib").path.exists()
    # embedded presets need no root
    preset = save_checkpoint(model, dataclasses.replace(meta, dataset=get_spec("digits").to_dict()), tmp_path / "p")
    assert library.import_checkpoint(preset, "p.safetensors", tmp_path / "lib", allow_duplicate=True).path.exists()
