"""The checkpoint's metadata: what a later tool needs to rebuild, evaluate and explain a model,
including its input recipe (resize, centre crop, channels, mean, std)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from asl_core.errors import CheckpointError, UserError
from asl_core.models import is_known_arch
from asl_core.objectives import method_names

FORMAT = "asl-lens-checkpoint/1"
META_KEY = "asl_lens"
FOREIGN_METHOD = "foreign"  # someone else's weights; every other method is a registered objective


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a later tool needs to rebuild, evaluate and explain a model."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str = "baseline"
    name: str = ""
    small_input: bool = False
    # 3: the data is grayscale and its one channel is repeated to feed a 3-channel model (foreign
    # RGB weights on a grayscale dataset); ``input_shape``, ``mean`` and ``std`` are the model's (3)
    channel_repeat: int = 1
    dataset: dict[str, Any] | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    parents: dict[str, str] = field(default_factory=dict)
    # mechanism figures of the training run (e.g. ClonalNet's mean |S|, the teacher's train
    # accuracy, same-class pairs per class) and loud warnings when a mechanism did not fire
    diagnostics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    content_hash: str = ""
    source: str = "asl-lens"
    format: str = FORMAT
    # constructor arguments of a timm model (``timm/<name>``), e.g. ``{"img_size": 32}``; checked
    # against an allow-list (asl_core.models.timm_models.check_arch_kwargs)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    # the input recipe beyond channels/mean/std: the shorter side is resized to ``resize`` and the
    # centre ``crop`` x ``crop`` kept (0: as the data comes; every checkpoint before issue 19).
    # Applied by asl_core.checkpoint.recipe.apply_recipe, where the model is built.
    resize: int = 0
    crop: int = 0
    interpolation: str = "bilinear"
    # where the recipe came from: "dataset" (statistics of the data), "file" (the checkpoint
    # said so: timm's pretrained_cfg, config.json, train.py's args), "imagenet" (chosen in the form)
    recipe_source: str = "dataset"

    @property
    def in_channels(self) -> int:
        """Channels the model takes."""
        return int(self.input_shape[0])

    @property
    def data_channels(self) -> int:
        """Channels of the data the model is evaluated on (1 when the channel is repeated)."""
        return self.in_channels // self.channel_repeat if self.channel_repeat in (1, 3) else self.in_channels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CheckpointMeta:
        if not isinstance(data, dict):
            raise CheckpointError("checkpoint metadata is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise CheckpointError(f"checkpoint metadata is missing fields: {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        _check_field_types(kwargs)
        try:
            meta = cls(**kwargs)
            meta = dataclasses.replace(
                meta,
                class_names=tuple(str(c) for c in meta.class_names),
                input_shape=tuple(int(v) for v in meta.input_shape),
                mean=tuple(float(v) for v in meta.mean),
                std=tuple(float(v) for v in meta.std),
                num_classes=int(meta.num_classes),
                channel_repeat=int(meta.channel_repeat),
                warnings=tuple(str(w) for w in meta.warnings),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"checkpoint metadata has a field of the wrong type: {exc}") from None
        meta.validate()
        return meta

    def validate(self) -> None:
        problems = []
        if not is_known_arch(self.arch):
            problems.append(f"unknown architecture {self.arch!r}")
        elif self.arch_kwargs:
            from asl_core.models.timm_models import check_arch_kwargs

            try:
                check_arch_kwargs(self.arch_kwargs)
            except UserError as exc:
                problems.append(str(exc))
        if not (0 <= self.resize <= 2048 and 0 <= self.crop <= 2048) or (self.crop and self.resize and self.crop > self.resize):
            problems.append(f"input recipe resize {self.resize} / crop {self.crop} is not 0..2048 with crop <= resize")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            problems.append(f"unknown interpolation {self.interpolation!r}")
        if self.num_classes < 2:
            problems.append("class count must be >= 2")
        if len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.input_shape) != 3 or self.input_shape[0] not in (1, 3) or min(self.input_shape) < 1:
            problems.append(f"input shape {self.input_shape} is not [C, H, W] with C 1 or 3")
        elif len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            problems.append("normalisation mean/std do not match the channel count")
        if self.channel_repeat not in (1, 3):
            problems.append(f"channel repeat must be 1 or 3, got {self.channel_repeat!r}")
        elif self.channel_repeat == 3 and self.input_shape[:1] != (3,):
            problems.append("a repeated grayscale channel needs a 3-channel model")
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std, default=1) <= 0:
            problems.append("normalisation has a non-finite mean or a non-positive std")
        if self.method not in (*method_names(), FOREIGN_METHOD):
            problems.append(f"unknown method {self.method!r}")
        if problems:
            raise CheckpointError("invalid checkpoint metadata: " + "; ".join(problems))


_NUMBER = (int, float)
_SEQUENCE = (list, tuple)
# The JSON shape of each field (found by tests/reliability/test_fuzz.py: an "arch" of [] or a
# "metrics" of "x" reached code that expected a string or a dict and raised TypeError).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "arch": (str,), "method": (str,), "name": (str,), "created": (str,), "content_hash": (str,), "source": (str,),
    "format": (str,), "num_classes": (int,), "small_input": (bool,), "dataset": (dict, type(None)),
    "hyperparams": (dict,), "layers": (dict,), "history": (list,), "metrics": (dict,), "best_epoch": (int, type(None)),
    "parents": (dict,), "diagnostics": (dict,), "arch_kwargs": (dict,), "resize": (int,), "crop": (int,),
    "interpolation": (str,), "recipe_source": (str,), "versions": (dict,), "class_names": _SEQUENCE, "input_shape": _SEQUENCE,
    "mean": _SEQUENCE, "std": _SEQUENCE, "warnings": _SEQUENCE,
}


def _check_field_types(data: dict[str, Any]) -> None:
    """Refuse metadata whose fields have the wrong JSON shape, before anything uses them."""
    for name, value in data.items():
        kinds = _FIELD_TYPES.get(name)
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise CheckpointError(f"checkpoint metadata field {name!r} is a {type(value).__name__}, "
                                  f"expected {' or '.join(k.__name__ for k in kinds)}")
    for name in ("input_shape", "mean", "std"):
        if name in data and not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in data[name]):
            raise CheckpointError(f"checkpoint metadata field {name!r} must hold numbers")
    bad_split = next((k for k, v in data.get("metrics", {}).items() if not isinstance(v, dict)), None)
    if bad_split is not None:
        raise CheckpointError(f"checkpoint metadata: metrics[{bad_split!r}] is not an object")
    if not all(isinstance(row, dict) for row in data.get("history", [])):
        raise CheckpointError("checkpoint metadata: history holds something other than objects")
    if not all(isinstance(w, _NUMBER) and not isinstance(w, bool) for w in data.get("layers", {}).values()):
        raise CheckpointError("checkpoint metadata: layer weights must be numbers")


