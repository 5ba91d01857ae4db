"""Models: the architecture registry, layer discovery and taps on named layers."""

from asl_core.models.architectures import ARCHITECTURES, ArchInfo, DigitsCNN, build_model, count_parameters, embedding_layer
from asl_core.models.layers import LayerTap, list_layers, pool_features, resolve_layers

__all__ = ["ARCHITECTURES", "ArchInfo", "DigitsCNN", "LayerTap", "build_model", "count_parameters", "embedding_layer",
           "list_layers", "pool_features", "resolve_layers"]
