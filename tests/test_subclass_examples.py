"""docs/subclassing.md's torch examples, executed from the page itself, on every input form their
base class accepts: the same input handling (dtypes, integer and bool targets, half precision,
empty batches, the derived kernel and the composed formula) as the class they extend.

``FocalBCELoss`` with ``gamma=0`` must equal ``BCELoss`` exactly; ``DenominatorSmoothedDice``
must equal 2I / (D + s) written out here with a one-hot target.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived

PAGE = Path(__file__).resolve().parents[1] / "docs" / "subclassing.md"


def _examples() -> dict:
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S):
        if "lossplug.torch" in block:
            exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


EXAMPLES = _examples()
ROUTES = ["derived", "composed"]


@pytest.fixture(params=ROUTES)
def route(request, monkeypatch):
    if request.param == "derived":  # the derived kernel on these small inputs (aot_eager: fast)
        monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 1)
        monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
        yield request.param
    else:
        with lt.fused_kernels(False):
            yield request.param


def test_the_page_defines_the_examples():
    assert {"FocalBCELoss", "DenominatorSmoothedDice"} <= set(EXAMPLES)


TARGET_DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]
PRED_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("target_dtype", TARGET_DTYPES, ids=str)
@pytest.mark.parametrize("pred_dtype", PRED_DTYPES, ids=str)
def test_focal_bce_takes_every_input_form_of_bce(route, pred_dtype, target_dtype):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(6, 7, generator=g)).to(pred_dtype).requires_grad_()
    y = (torch.rand(6, 7, generator=g) > 0.5).to(target_dtype)
    focal = EXAMPLES["FocalBCELoss"](gamma=0.0, from_logits=True)
    value = focal(x, y)
    value.backward()
    grad, x.grad = x.grad, None
    expected = lt.BCELoss(from_logits=True)(x, y)
    expected.backward()
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, x.grad, rtol=1e-5, atol=1e-7)
    assert EXAMPLES["FocalBCELoss"](gamma=2.0, from_logits=True)(x, y) < value  # the focal factor


def test_focal_bce_on_an_empty_batch_and_with_every_reduction(route):
    focal = EXAMPLES["FocalBCELoss"](gamma=2.0, from_logits=True, reduction="none")
    x, y = torch.randn(0, 3), torch.zeros(0, 3, dtype=torch.int64)
    assert focal(x, y).shape == (0, 3)
    for reduction in ("mean", "sum"):
        expected = lt.BCELoss(from_logits=True, reduction=reduction)(x, y)
        torch.testing.assert_close(EXAMPLES["FocalBCELoss"](reduction=reduction, from_logits=True)(x, y),
                                   expected, equal_nan=True)


def test_focal_bce_raises_what_bce_raises():
    focal, bce = EXAMPLES["FocalBCELoss"](), lt.BCELoss()
    for x, y in [(torch.rand(3, 4), torch.rand(4, 3)), (torch.rand(3, 4) + 2, torch.rand(3, 4))]:
        with pytest.raises(ValueError) as theirs:
            bce(x, y)
        with pytest.raises(ValueError) as ours:
            focal(x, y)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8], ids=str)
@pytest.mark.parametrize("pred_dtype", PRED_DTYPES, ids=str)
def test_denominator_smoothed_dice_takes_every_input_form_of_dice(route, pred_dtype, label_dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 6, generator=g).to(pred_dtype).requires_grad_()
    labels = torch.randint(0, 4, (3, 5, 6), generator=g).to(label_dtype)
    loss = EXAMPLES["DenominatorSmoothedDice"](from_logits=True, activation="softmax", smooth=0.5)
    value = loss(x, labels)
    value.backward()
    p = torch.softmax(x.detach().float() if x.dtype != torch.float64 else x.detach(), 1)
    y = torch.nn.functional.one_hot(labels.long(), 4).movedim(-1, 1).to(p.dtype)
    inter, den = (p * y).sum((1, 2, 3)), (p * p).sum((1, 2, 3)) + (y * y).sum((1, 2, 3))
    expected = (1 - 2 * inter / (den + 0.5)).mean()
    torch.testing.assert_close(value.detach(), expected, rtol=1e-5, atol=1e-6)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    masks = y.to(torch.float64 if pred_dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(loss(x, masks).detach(), expected, rtol=1e-5, atol=1e-6)  # one-hot masks
