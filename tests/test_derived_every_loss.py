"""Every registry loss (each loss's cases, as ``loss_cases`` makes them from the registry) through its
derived kernel: ``torch.compile`` of ``grad_and_value`` of its formula gives the value and gradient
of the composed formula (float64), and the kernel really ran. A new loss is covered by its registry
entry alone. Compiled by ``aot_eager`` (the traced value-and-gradient graph; inductor's generated
code is checked per loss family in test_fast_paths.py and test_fused_dice.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from loss_cases import FIRST_PER_LOSS, to_torch, torch_loss

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived

CASES = [c for c in FIRST_PER_LOSS if c.name != "combined"]


@pytest.fixture(autouse=True)
def derived_everywhere(monkeypatch):
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 1)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


def _value_and_grad(module, x, y):
    x = x.detach().clone().requires_grad_()
    value = module(x, y)
    value.backward()
    return value, x.grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_derived_kernel_gives_the_composed_value_and_gradient(case, reduction):
    x, y = to_torch(case.inputs(seed=3), torch.float64)
    module = torch_loss(case, reduction=reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compile must fail the test
        value, grad = _value_and_grad(module, x, y)
    assert type(value.grad_fn).__name__ == "DerivedLossBackward", case.id
    with lt.fused_kernels(False):
        expected, expected_grad = _value_and_grad(module, x, y)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)

