"""What a foreign reader found in a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from asl_core.checkpoint.recipe import Recipe


@dataclass
class ForeignModel:
    """A foreign file's weights and whatever it states about them (``None``: not stated).

    ``graph`` is set for a ``torch.export`` archive (the checked program JSON; the module is
    rebuilt from it); ``class_names`` when the file names its labels (timm's config.json)."""

    format: str
    state: dict[str, torch.Tensor]
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    in_channels: int | None = None
    recipe: Recipe = field(default_factory=Recipe)
    graph: str = ""
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    has_ema: bool = False
