"""The radix argsort of long float32 rows (``lossplug.frameworks.torch_sort``) sorts as torch does."""

from __future__ import annotations

import pytest
import torch

import lossplug.torch as lt
from lossplug.frameworks import torch_sort
from lossplug.frameworks.ops import get_backend

ROW = torch_sort.RADIX_MIN + 5


def _rows(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    x.view(-1)[:6] = torch.tensor([float("-inf"), float("inf"), -0.0, 0.0, -1e-40, 1e-40])
    x.view(-1)[6:200] = 0.5  # ties
    return x


@pytest.mark.parametrize("descending", [False, True])
def test_argsort_rows_orders_as_torch_argsort(descending):
    x = _rows(3, 2, ROW)
    order = torch_sort.argsort_rows(x, descending)
    assert order.dtype == torch.int64 and order.shape == x.shape
    expected = torch.argsort(x, dim=-1, descending=descending)
    torch.testing.assert_close(x.gather(-1, order), x.gather(-1, expected), rtol=0, atol=0)
    assert torch.equal(order.sort(-1).values, torch.arange(ROW).expand_as(order))  # a permutation


def test_the_backend_takes_it_for_long_float32_cpu_rows_only(monkeypatch):
    xp = get_backend("torch")
    calls = []
    sort_rows = torch_sort.argsort_rows
    monkeypatch.setattr(torch_sort, "argsort_rows", lambda x, d: calls.append(x.shape) or sort_rows(x, d))
    long_rows, short_rows = _rows(2, ROW), _rows(2, torch_sort.RADIX_MIN - 1)
    assert torch_sort.applies(long_rows, -1) == torch_sort.RADIX
    assert not torch_sort.applies(short_rows, -1)
    assert not torch_sort.applies(long_rows.double(), -1)
    assert not torch_sort.applies(long_rows.T, 0)
    for x in (long_rows, short_rows, long_rows.double()):
        order = xp.argsort(x, axis=-1, descending=True)
        assert torch.equal(x.gather(-1, order), x.sort(-1, descending=True).values)
    assert calls == ([long_rows.shape] if torch_sort.RADIX else [])


def test_argsort_rows_under_vmap_and_torch_compile():
    x = _rows(2, 3, ROW)
    expected = torch_sort.argsort_rows(x, True)
    assert torch.equal(torch.func.vmap(lambda r: torch_sort.argsort_rows(r, True))(x), expected)
    assert torch.equal(torch.func.vmap(lambda r: torch_sort.argsort_rows(r, True), in_dims=1)(x),
                       expected.movedim(1, 0))
    compiled = torch.compile(lambda r: torch_sort.argsort_rows(r, True), fullgraph=True, dynamic=True)
    assert torch.equal(compiled(x), expected)


@pytest.mark.parametrize("kw", [{"from_logits": True}, {"from_logits": True, "aggregation": "batch"},
                                {"from_logits": True, "ignore_index": 255}], ids=str)
def test_lovasz_on_long_rows_equals_the_comparison_sort(kw, monkeypatch):
    """Value and gradient of the Lovász-softmax on images of more than RADIX_MIN pixels, float32,
    through the derived kernel and eagerly, equal those with torch.argsort."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 184, 184, generator=g)
    labels = torch.randint(0, 3, (2, 184, 184), generator=g)
    if "ignore_index" in kw:
        labels[0, :20] = 255
    module = lt.LovaszLoss(**kw)

    def value_and_grad():
        xg = x.clone().requires_grad_()
        value = module(xg, labels)
        value.backward()
        return value, xg.grad

    results = [value_and_grad()]
    with lt.fused_kernels(False):
        results.append(value_and_grad())
    monkeypatch.setattr(torch_sort, "RADIX", False)
    with lt.fused_kernels(False):
        expected, expected_grad = value_and_grad()
    for value, grad in results:
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)
