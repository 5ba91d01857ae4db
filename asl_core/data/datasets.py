"""Datasets with the three problems of METHODS.md section 3 (kept for imports of the old single
module). The ideas live in their own modules: :mod:`spec` (specs and presets), :mod:`sources`
(lazily decoded sources), :mod:`manifest` (the folder scan), :mod:`splitting` (index splits),
:mod:`corruption` and :mod:`loading` (DataLoaders)."""

from asl_core.data.corruption import corrupt, corrupt_one
from asl_core.data.sources import mnist5k_arrays
from asl_core.data.spec import EMBEDDED_SOURCES, IMAGE_EXTENSIONS, PRESETS, SOURCES, DatasetSpec, get_spec
from asl_core.data.splitting import Split, Splits, build_splits, long_tail_counts, normalize

__all__ = ["EMBEDDED_SOURCES", "IMAGE_EXTENSIONS", "PRESETS", "SOURCES", "DatasetSpec", "Split", "Splits", "build_splits",
           "corrupt", "corrupt_one", "get_spec", "long_tail_counts", "mnist5k_arrays", "normalize"]
