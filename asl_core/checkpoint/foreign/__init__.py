"""Other people's models, behind one door: :func:`read_foreign` tells the format apart and hands
the file to its reader; :func:`foreign_checkpoint` turns what was found into a loaded model.

=========================  ===============================================  ====================
format                     example                                          reader
=========================  ===============================================  ====================
plain state dict           ``resnet18.pth``, ``weights.bin``, ``.safetensors``  ``state_dict``
Lightning checkpoint       ``epoch=9.ckpt``                                 ``state_dict``
timm train.py checkpoint   ``model_best.pth.tar``, ``checkpoint-9.pth.tar``  ``timm_train``
timm hub folder            ``convnext/`` or ``convnext.zip``                ``hub``
torch.export archive       ``model.pt2``                                    ``export``
=========================  ===============================================  ====================

Nothing in a file is run: pickles go through ``torch.load(weights_only=True)`` (plus
``argparse.Namespace`` for timm), and a ``.pt2`` archive is read without unpickling (see
``export``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from asl_core.checkpoint.files import MAX_CHECKPOINT_BYTES, check_size, file_kind, read_pickled, read_safetensors
from asl_core.checkpoint.foreign.guess import Guess, guess_arch
from asl_core.checkpoint.foreign.model import ForeignModel
from asl_core.checkpoint.foreign.hub import MAX_CLASSES
from asl_core.checkpoint.foreign.state_dict import extract_state_dict, infer_in_channels, infer_num_classes
from asl_core.checkpoint.format import LoadedCheckpoint, build_and_load, content_hash
from asl_core.checkpoint.meta import CheckpointMeta
from asl_core.checkpoint.recipe import IMAGENET_MEAN, IMAGENET_STD
from asl_core.errors import CheckpointError, NotOurCheckpointError
from asl_core.models import ARCHITECTURES, EXPORT_ARCH

MAX_INPUT_SIDE = 1024  # px; an exported model's stated input is run once on a batch of 3 at import

__all__ = ["Description", "ForeignModel", "Guess", "describe", "extract_state_dict", "foreign_checkpoint", "foreign_meta", "guess_arch",
           "read_foreign"]


def read_foreign(path: str | Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES, use_ema: bool | None = None) -> ForeignModel:
    """Read any accepted foreign format (a file, a timm hub folder, or a ``.zip`` of one)."""
    from asl_core.checkpoint.foreign import export, hub, timm_train

    path = Path(path)
    if path.is_dir():
        return hub.read_hub_folder(path, max_bytes)
    check_size(path, max_bytes)
    kind = file_kind(path)
    if kind == "safetensors":
        tensors, _ = read_safetensors(path)
        return ForeignModel(format="safetensors state dict", state=tensors)
    if kind == "pt2":
        graph, state = export.read_pt2(path, max_bytes)
        return ForeignModel(format="torch.export archive (.pt2)", state=state, arch=EXPORT_ARCH, graph=graph)
    if kind == "zip":
        return hub.read_hub_zip(path, max_bytes)
    if kind in ("torch-zip", "pickle"):
        obj = read_pickled(path)
        if timm_train.is_timm_train(obj):
            return timm_train.read_timm_train(obj, use_ema)
        lightning = isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj
        return ForeignModel(format="Lightning checkpoint" if lightning else "PyTorch state dict",
                            state=extract_state_dict(obj))
    raise CheckpointError("unrecognised file: not a safetensors file, a PyTorch checkpoint, a .pt2 archive nor a .zip")


@dataclasses.dataclass(frozen=True)
class Description:
    """What the upload form shows before import: the format, what the file states, or the guess."""

    format: str
    arch: str | None
    num_classes: int | None
    recipe: str
    guess: Guess | None
    notes: tuple[str, ...]
    has_ema: bool

    def summary(self) -> str:
        parts = [self.format]
        if self.arch:
            parts.append(f"architecture {self.arch} (stated by the file)")
        elif self.guess:
            parts.append(f"architecture not stated; from its keys and shapes it looks like {self.guess.describe()}")
        else:
            parts.append("architecture not stated, and no known architecture matches its keys; choose one")
        if self.num_classes:
            parts.append(f"{self.num_classes} classes")
        if self.recipe:
            parts.append(self.recipe)
        return "; ".join(parts)


def describe(path: str | Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Description:
    """Read a foreign file and say what it holds, guessing the architecture when it does not say."""
    found = read_foreign(path, max_bytes=max_bytes)
    r = found.recipe
    recipe = ""
    if r.stated:
        recipe = (f"input {r.size or '?'} px (resize {r.resize}, centre crop {r.crop}, {r.interpolation})"
                  + (f", mean {', '.join(f'{v:.3f}' for v in r.mean)}" if r.mean else "")
                  + (f", std {', '.join(f'{v:.3f}' for v in r.std)}" if r.std else ""))
    guess = None if found.arch else guess_arch(found.state)
    n = found.num_classes or (None if found.graph else infer_num_classes(found.state))
    return Description(format=found.format, arch=found.arch, num_classes=n, recipe=recipe, guess=guess,
                       notes=found.notes, has_ema=found.has_ema)


def check_class_count(n: int) -> None:
    """A class count stated by a file or read from its classifier's rows (an empty ``[10**7, 0]``
    weight is a few bytes) is bounded before anything is sized by it."""
    if not 2 <= int(n) <= MAX_CLASSES:
        raise CheckpointError(f"the model has {int(n):,} classes; ASL Lens opens 2 to {MAX_CLASSES:,}")


def foreign_meta(arch: str, num_classes: int, state: dict[str, torch.Tensor], name: str = "") -> CheckpointMeta:
    """Metadata for weights of a registry architecture that state nothing else: what can be
    inferred, sensible defaults otherwise (the behaviour before issue 19)."""
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)} or timm/<name>")
    in_ch = infer_in_channels(state, ARCHITECTURES[arch].first_conv) or ARCHITECTURES[arch].default_input[0]
    conv1 = state.get("conv1.weight")
    default_side = ARCHITECTURES[arch].default_input[1]
    small = bool(conv1 is not None and conv1.shape[-1] == 3) or default_side < 64
    size = default_side if default_side < 64 else (32 if small else 224)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_ch == 3 else ((0.5,) * in_ch, (0.25,) * in_ch)
    return CheckpointMeta(
        arch=arch, num_classes=int(num_classes), class_names=tuple(str(i) for i in range(num_classes)),
        input_shape=(in_ch, size, size), mean=mean, std=std, method="foreign", name=name, small_input=small,
        source="foreign",
    )


def _stated_meta(found: ForeignModel, arch: str, num_classes: int, name: str) -> CheckpointMeta:
    """Metadata for a timm model: channels, size, crop, mean and std from the file where it says,
    else timm's own configuration of the architecture."""
    from asl_core.models.timm_models import default_recipe
    from asl_core.checkpoint.recipe import recipe_from_timm

    recipe, source = found.recipe, "file"
    if not recipe.stated:
        recipe, source = recipe_from_timm(default_recipe(arch)), "architecture"
    in_ch = found.in_channels or infer_in_channels(found.state) or 3
    size = recipe.size or 224
    mean = recipe.mean if recipe.mean and len(recipe.mean) == in_ch else (IMAGENET_MEAN if in_ch == 3 else (0.5,))
    std = recipe.std if recipe.std and len(recipe.std) == in_ch else (IMAGENET_STD if in_ch == 3 else (0.25,))
    names = found.class_names if len(found.class_names) == num_classes else tuple(str(i) for i in range(num_classes))
    return CheckpointMeta(arch=arch, num_classes=num_classes, class_names=names, input_shape=(in_ch, size, size),
                          mean=mean, std=std, method="foreign", name=name, source="foreign",
                          arch_kwargs=dict(found.arch_kwargs), resize=recipe.resize, crop=recipe.crop,
                          interpolation=recipe.interpolation, recipe_source=source)


def _export_meta(found: ForeignModel, model: torch.nn.Module, name: str) -> CheckpointMeta:
    import json

    from asl_core.checkpoint.foreign.export import input_shape

    shape = input_shape(json.loads(found.graph))
    if shape is None or len(shape) != 4 or shape[1] not in (1, 3) or min(shape[2:]) < 1:
        raise CheckpointError(f"the exported model takes {shape}; ASL Lens feeds images [N, C, H, W] with C 1 or 3")
    _, c, h, w = shape
    if h != w:
        raise CheckpointError(f"the exported model takes {h}x{w} images; only square inputs are supported")
    if h > MAX_INPUT_SIDE:
        raise CheckpointError(f"the exported model takes {h}x{w} images; ASL Lens feeds at most {MAX_INPUT_SIDE} px")
    try:
        with torch.no_grad():
            out = model(torch.zeros(3, c, h, w))  # 3: not the batch it was exported with, as inference will not be
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError("the exported model does not run on a batch of another size; export it with a dynamic "
                              f"batch (dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}}): {first[:120]}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        raise CheckpointError("the exported model must return logits [N, classes]")
    n = int(out.shape[1])
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if c == 3 else ((0.5,), (0.25,))
    return CheckpointMeta(arch=EXPORT_ARCH, num_classes=n, class_names=tuple(str(i) for i in range(n)),
                          input_shape=(c, h, w), mean=mean, std=std, method="foreign", name=name, source="foreign",
                          resize=h, crop=h, recipe_source="architecture")


def foreign_checkpoint(found: ForeignModel, arch: str | None = None, num_classes: int | None = None,
                       name: str = "") -> LoadedCheckpoint:
    """The model ``found`` describes, built and loaded. ``arch``/``num_classes`` (the form, the CLI)
    fill in what the file does not state; contradicting the file is an error. Without either, a
    bare state dict is :class:`NotOurCheckpointError`, naming the best guess from its keys."""
    state = found.state
    if found.graph:
        if arch not in (None, EXPORT_ARCH):
            raise CheckpointError(f"the file is a torch.export archive that carries its own graph, not a {arch}")
        from asl_core.checkpoint.foreign.export import module_from_graph

        model = module_from_graph(found.graph, state)
        meta = _export_meta(found, model, name)
        if num_classes is not None and num_classes != meta.num_classes:
            raise CheckpointError(f"the exported model has {meta.num_classes} classes, not {num_classes}")
        model = build_and_load(meta, state, found.graph)
        meta = dataclasses.replace(meta, content_hash=content_hash(state, meta, found.graph))
        return LoadedCheckpoint(model=model, meta=meta, graph=found.graph)
    if found.arch and arch and arch != found.arch:
        raise CheckpointError(f"the file says it is {found.arch}, not {arch}")
    chosen = found.arch or arch
    if chosen is None:  # the guess (seconds) is asked for separately: asl_core.checkpoint.foreign.describe
        raise NotOurCheckpointError(f"this {found.format} does not say its architecture; say which architecture it is "
                                    "(arch=..., --arch, or the form's Architecture) to load its weights")
    n = found.num_classes or infer_num_classes(state)
    if num_classes is not None and found.num_classes and num_classes != found.num_classes:
        raise CheckpointError(f"the file says {found.num_classes} classes, not {num_classes}")
    n = num_classes or n
    if n is None:
        raise CheckpointError("cannot infer the class count; pass num_classes")
    check_class_count(n)
    if chosen.startswith("timm/"):
        meta = _stated_meta(found, chosen, int(n), name)
    else:
        meta = foreign_meta(chosen, int(n), state, name=name)
    model = build_and_load(meta, state)
    meta = dataclasses.replace(meta, content_hash=content_hash(state, meta),
                               warnings=tuple(found.notes) + meta.warnings)
    return LoadedCheckpoint(model=model, meta=meta)
