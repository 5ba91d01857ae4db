"""Data: dataset specs with the three conditions of METHODS.md section 3, and their splits."""

from asl_core.data.corruption import corrupt
from asl_core.data.loading import split_loader
from asl_core.data.spec import EMBEDDED_SOURCES, IMAGE_EXTENSIONS, PRESETS, SOURCES, DatasetSpec, get_spec
from asl_core.data.splitting import Split, Splits, build_splits, long_tail_counts, normalize
from asl_core.data.roots import KnownDataset, check_root_allowed, known_datasets, resolve_dataset

__all__ = ["EMBEDDED_SOURCES", "IMAGE_EXTENSIONS", "PRESETS", "SOURCES", "DatasetSpec", "Split", "Splits", "build_splits", "corrupt", "get_spec",
           "long_tail_counts", "normalize", "split_loader", "KnownDataset", "check_root_allowed", "known_datasets",
           "resolve_dataset"]
