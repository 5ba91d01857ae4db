"""CUDA tests: marked ``cuda``; on a machine without a GPU they skip with the reason below.
``bench/gpu_check.sh`` runs them (and the DDP smoke run, cuML and the benches) on a GPU machine."""

from __future__ import annotations

import pytest
import torch

NO_GPU = "needs a CUDA GPU (torch.cuda.is_available() is False here); run bench/gpu_check.sh on a GPU machine"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_GPU)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
