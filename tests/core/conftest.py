"""Fixtures for the core tests: tiny data and tiny trained checkpoints."""

from __future__ import annotations

import pytest

from asl_core.data import get_spec


@pytest.fixture(scope="session")
def tiny_spec():
    """Digits with 12 training samples for the largest class, a 3x tail, light corruption."""
    return get_spec("digits-hard", samples_per_class=12, imbalance=3.0, val_per_class=5, test_per_class=6)
