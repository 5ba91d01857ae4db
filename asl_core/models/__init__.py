"""Models: the architecture registry, layer discovery and taps on named layers."""

from asl_core.models.architectures import (ARCHITECTURES, EXPORT_ARCH, ArchInfo, DigitsCNN, MnistCNN, build_model, count_parameters,
                                           is_known_arch,
                                           embedding_layer, paper_layers)
from asl_core.models.layers import (LayerTap, describe_layer, layer_labels, layer_widths, list_layers, pool_features,
                                    resolve_layers)

__all__ = ["ARCHITECTURES", "EXPORT_ARCH", "is_known_arch", "ArchInfo", "DigitsCNN", "LayerTap", "MnistCNN", "build_model", "count_parameters", "embedding_layer",
           "list_layers", "paper_layers", "pool_features", "resolve_layers", "describe_layer", "layer_labels",
           "layer_widths"]
