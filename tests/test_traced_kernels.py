"""The derived kernels of lossplug's own classes run as graphs traced without dynamo.

``lossplug.frameworks.compiled._Traces``: ``make_fx`` with symbolic shapes, compiled by inductor,
each input layout looked up by its exact shapes and strides and, when new, checked against the
shape guards the trace recorded. These tests give it layouts a graph must not serve (a size-1
axis, unequal sizes where a trace saw equal ones, a transposed input) and check every value and
gradient against the same loss with the kernels off, and that dynamo compiled nothing.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived


@pytest.fixture
def traced(monkeypatch):
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 64)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "inductor")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failing kernel fails the test
        yield


def _value_and_grad(module, x, y):
    x = x.detach().clone().requires_grad_()
    value = module(x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value, grad


def _check(module, x, y):
    value, grad = _value_and_grad(module, x, y)
    assert type(value.grad_fn).__name__ == "DerivedLossBackward", "the derived kernel did not run"
    with lt.fused_kernels(False):
        expected, expected_grad = _value_and_grad(module, x, y)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def _dynamo_graphs():
    """How many graphs dynamo captured in this process."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _segmentation(batch, classes, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, classes, h, w, generator=g)
    return x, torch.randint(0, classes, (batch, h, w), generator=g)


def test_a_lossplug_class_runs_traced_graphs_on_every_layout_without_dynamo(traced):
    module = lt.DiceLoss(from_logits=True, per_class=True)
    frames = _dynamo_graphs()
    x, y = _segmentation(2, 4, 8, 8)
    _check(module, x, y)
    _check(module, *_segmentation(3, 4, 8, 8, seed=1))  # another batch: the same graph
    _check(module, *_segmentation(2, 4, 8, 12, seed=2))  # h != w
    _check(module, *_segmentation(1, 4, 8, 8, seed=3))  # a batch of one
    _check(module, *_segmentation(2, 5, 16, 8, seed=4))  # another class count
    xt = x.transpose(2, 3)  # a transposed (non-contiguous) input; its labels to match
    _check(module, xt, y.transpose(1, 2))
    assert _dynamo_graphs() == frames, "dynamo captured a graph: the traced path was not taken"
    kernel = module._plan[3]
    assert kernel.traces is not None and kernel.traces.graphs


@pytest.mark.parametrize("name, kw, shapes", [
    ("bce", {"from_logits": True}, [(40, 3), (80, 1), (1, 80), (9, 9)]),
    ("sparse_categorical_ce", {"from_logits": True, "ignore_index": 255}, [(30, 5), (70, 1), (6, 5, 4)]),
])
def test_elementwise_and_class_losses_on_size_one_and_equal_axes(traced, name, kw, shapes):
    module = lt.BCELoss(**kw) if name == "bce" else lt.SparseCategoricalCELoss(**kw)
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = 3 * torch.randn(shape, generator=g)
        if name == "bce":
            y = torch.rand(shape, generator=g)
        else:
            label_shape = (shape[0],) + tuple(shape[2:])
            y = torch.randint(0, shape[1], label_shape, generator=g)
            y.view(-1)[0] = 255
        _check(module, x, y)


def test_a_subclass_is_compiled_by_torch_compile(traced):
    """A subclass's formula may read attributes that no key holds: dynamo's guards watch them."""

    class Scaled(lt.MSELoss):
        scale = 2.0

        def terms(self, y_pred, y_true):
            loss, weight = super().terms(y_pred, y_true)
            return self.scale * loss, weight

    module = Scaled()
    x, y = torch.randn(20, 8), torch.randn(20, 8)
    value, _ = _value_and_grad(module, x, y)
    module.scale = 3.0  # read by the formula: the kernel must see it
    again, _ = _value_and_grad(module, x, y)
    torch.testing.assert_close(again, 1.5 * value)
    assert module._plan[3].traces is None


def test_class_weights_are_kernel_inputs_not_constants(traced):
    """Class weights are tensors: the kernel takes torch.compile's path, which reads them each call."""
    module = lt.SparseCategoricalCELoss(from_logits=True, class_weights=[1.0, 2.0, 3.0])
    x, y = _segmentation(2, 3, 4, 4)
    _check(module, x, y)
    assert module._plan[3].traces is None
    module.class_weights = [3.0, 1.0, 1.0]
    _check(module, x, y)


def test_past_the_graph_limit_torch_compile_serves_further_layouts(traced, monkeypatch):
    monkeypatch.setattr(compiled._Traces, "LIMIT", 1)
    module = lt.HuberLoss(delta=0.5)
    _check(module, torch.randn(16, 8), torch.randn(16, 8))
    frames = _dynamo_graphs()
    _check(module, torch.randn(100, 1), torch.randn(100, 1))  # a size-1 axis: another graph is needed
    assert _dynamo_graphs() > frames
