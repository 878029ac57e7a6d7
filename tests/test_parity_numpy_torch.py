"""The NumPy reference and lossplug.torch give the same numbers on random inputs.

A parity check (the same formula through two backends), run alongside the independent checks in
test_values_*.py: every case of ``loss_cases.CASES`` (each loss, several parameter sets), every
reduction, torch in float32 and float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_cases import CASES, numpy_params, to_torch, torch_loss

import lossplug.numpy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torch_matches_numpy(case, reduction, torch_dtype, tol):
    arrays = case.inputs(seed=1)
    expected = getattr(lossplug.numpy, case.name)(*arrays, **numpy_params(case), reduction=reduction)
    out = torch_loss(case, reduction=reduction)(*to_torch(arrays, torch_dtype))
    assert out.dtype == torch_dtype
    assert tuple(out.shape) == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, **tol)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("categorical_ce", "kl_div", "dice")],
                         ids=lambda c: c.id)
def test_numpy_channels_last_equals_torch_channels_first(case):
    # the NumPy default class axis is -1; moving the classes there gives the same loss
    y_pred, y_true = case.inputs(seed=2)
    params = dict(case.params)
    pred_last = np.moveaxis(y_pred, 1, -1)
    true_last = y_true if y_true.ndim < y_pred.ndim else np.moveaxis(y_true, 1, -1)
    expected = torch_loss(case, reduction="none")(*to_torch((y_pred, y_true), torch.float64))
    out = getattr(lossplug.numpy, case.name)(pred_last, true_last, **params, reduction="none")
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10, atol=1e-12)
