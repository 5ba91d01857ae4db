"""Data: dataset specs with the three conditions of METHODS.md section 3, and their splits."""

from asl_core.data.datasets import (EMBEDDED_SOURCES, IMAGE_EXTENSIONS, PRESETS, SOURCES, DatasetSpec, Split, Splits, build_splits, corrupt,
                                    get_spec, long_tail_counts, normalize)
from asl_core.data.roots import KnownDataset, check_root_allowed, known_datasets, resolve_dataset

__all__ = ["EMBEDDED_SOURCES", "IMAGE_EXTENSIONS", "PRESETS", "SOURCES", "DatasetSpec", "Split", "Splits", "build_splits", "corrupt", "get_spec",
           "long_tail_counts", "normalize", "KnownDataset", "check_root_allowed", "known_datasets",
           "resolve_dataset"]
