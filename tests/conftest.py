"""Shared fixtures. Imports no framework at module level (the Keras runs collect this file too)."""

from __future__ import annotations

import pytest
from loss_cases import tolerances


@pytest.fixture(params=["float32", "float64"])
def torch_dtype(request):
    """A torch float dtype; every test using it runs once per dtype."""
    import torch

    return getattr(torch, request.param)


@pytest.fixture
def tol(torch_dtype):
    """``rtol``/``atol`` for comparing a ``torch_dtype`` result with a float64 reference."""
    return tolerances(torch_dtype)


@pytest.fixture(autouse=True)
def _seed_torch():
    """A fixed torch seed per test, only where torch is already imported."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
