"""Layer discovery and forward-hook taps on named layers (the torchvision feature-extraction habit:
``list_layers`` next to the code that extracts them; dotted module paths as names)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import LayerError


# parameter-free plumbing: activations, dropout, flatten, identity
_SKIP = (nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity, nn.Flatten, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
         nn.Sigmoid, nn.Tanh, nn.LeakyReLU)
_SKIP_KINDS = {t.__name__ for t in _SKIP}
LOGITS = "logits"


def layer_kind(module: nn.Module) -> str:
    """The module's class name; for a graph read from a ``.pt2`` archive (whose modules are all
    ``InterpreterModule``), the class the exported program recorded (``Conv2d``, ``Block``)."""
    return getattr(module, "asl_kind", None) or type(module).__name__


def _skip(module: nn.Module) -> bool:
    return isinstance(module, _SKIP) or layer_kind(module) in _SKIP_KINDS


def list_layers(model: nn.Module) -> list[str]:
    """Layer names a person can choose for ASLoss or extraction, in forward order, for any
    ``nn.Module`` (ours, torchvision's, timm's, an unflattened ``torch.export`` graph).

    The top-level children and, for those that hold modules, their direct children (``layer3``,
    ``layer3.1``, ``fc``), leaving out parameter-free plumbing (activations, dropout, flatten, identity)."""
    names = []
    for name, child in model.named_children():
        if _skip(child):
            continue
        names.append(name)
        names.extend(f"{name}.{sub}" for sub, m in child.named_children() if not _skip(m))
    if LOGITS not in names:
        names.append(LOGITS)  # the model's output: a layer every classifier has, so any two can be compared
    return names


def resolve_layers(model: nn.Module, layers: Iterable[str]) -> OrderedDict[str, nn.Module]:
    """Map layer names to modules; unknown names raise a ``LayerError`` listing valid ones."""
    modules = dict(model.named_modules())
    modules.setdefault(LOGITS, model)
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name in layers:
        if not name or name not in modules:
            valid = ", ".join(list_layers(model))
            raise LayerError(f"unknown layer {name!r}; valid layers: {valid} (see asl_core.models.list_layers)")
        out[name] = modules[name]
    return out


def _channels_last(module: nn.Module) -> bool:
    fmt = getattr(module, "output_fmt", None)
    return str(getattr(fmt, "value", fmt)) == "NHWC"


def pool_features(t: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C]`` by global average pooling; ``[B, ..., D]`` -> ``[B, D']`` flat."""
    if t.dim() == 4:
        return t.mean(dim=(2, 3))
    if t.dim() == 3:
        return t.mean(dim=1)
    return t.flatten(1)


class LayerTap:
    """Forward hooks that keep the (pooled) outputs of named layers during a forward pass.

    >>> with LayerTap(model, ["embedding"]) as tap:
    ...     logits = model(x)
    ...     h = tap.outputs["embedding"]   # [B, D], part of the autograd graph
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], pool: bool = True, detach: bool = False):
        self.modules = resolve_layers(model, layers)
        self.pool = pool
        self.detach = detach
        self.outputs: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._handles: list = []

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if output.dim() == 4 and _channels_last(_module):  # timm's NHWC outputs (a ViT's PatchEmbed)
                output = output.permute(0, 3, 1, 2)
            if self.pool and output.dim() >= 3:
                t = pool_features(output)
            else:
                # a later in-place op (ReLU(inplace=True)) would overwrite the kept tensor
                t = output.flatten(1).clone() if self.pool else output.clone()
            self.outputs[name] = t.detach() if self.detach else t

        return hook

    def __enter__(self) -> LayerTap:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def layer_widths(model: nn.Module, input_shape: tuple[int, int, int], layers: Iterable[str]) -> dict[str, int]:
    """The width of each layer's extracted features (channels of a conv map, units of a linear
    layer: the ``D`` of ``[N, D]`` after pooling), from one forward pass of a zero image of
    ``input_shape`` ``[C, H, W]``. The model's train/eval mode is restored; no gradients."""
    layers = list(layers)
    was_training = model.training
    p = next(iter(model.parameters()), None)
    x = torch.zeros((2, *input_shape), device=p.device if p is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad(), LayerTap(model, layers, pool=True, detach=True) as tap:
            model(x)
            return {name: int(tap.outputs[name].shape[1]) for name in layers if name in tap.outputs}
    finally:
        model.train(was_training)


def describe_layer(name: str, module: nn.Module, width: int | None = None) -> str:
    """``embedding.1 · ReLU · 64``: the dotted name, the module's kind and its feature width."""
    parts = [name, layer_kind(module)]
    if width is not None:
        parts.append(str(width))
    return " · ".join(parts)


def layer_labels(model: nn.Module, input_shape: tuple[int, int, int] | None = None,
                 layers: Iterable[str] | None = None) -> dict[str, str]:
    """``{name: describe_layer(...)}`` for ``layers`` (default :func:`list_layers`). Widths come
    from :func:`layer_widths` when ``input_shape`` is given and the forward pass works; a model
    that cannot run on that shape gets labels without widths rather than an error."""
    names = list(layers) if layers is not None else list_layers(model)
    modules = resolve_layers(model, names)
    widths: dict[str, int] = {}
    if input_shape is not None:
        try:
            widths = layer_widths(model, tuple(input_shape), names)
        except (RuntimeError, ValueError):  # e.g. a shape the model's stem cannot take
            widths = {}
    return {name: describe_layer(name, modules[name], widths.get(name)) for name in names}
