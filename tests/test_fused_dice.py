"""Dice on integer label maps through the derived kernel (lossplug.frameworks.derived; torch, CPU).

Values and gradients are checked against a one-hot Dice written out here with torch ops (float64,
autograd gives its gradient), against MONAI's DiceLoss (float32 and float64) and against the
composed path (``fused_kernels(False)``); double backward by gradgradcheck. Each test also checks
that the derived kernel really ran (its backward node is in the autograd graph); the inputs are
small, so ``DERIVED_MIN_NUMEL`` is lowered for every test of this file.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from loss_cases import value_and_grad
from monai.losses import DiceLoss as MonaiDiceLoss  # the bench extra; .[dev] installs it

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived

FUSED_NODE = "DerivedLossBackward"


@pytest.fixture(autouse=True)
def small_inputs_derived(monkeypatch):
    """Derived kernels on these small inputs, compiled by aot_eager (the traced value-and-gradient
    graph without code generation) except in the tests that take ``inductor``."""
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 16)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


@pytest.fixture
def inductor(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "inductor")


def _graph_names(value):
    names, seen, stack = set(), set(), [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(f for f, _ in node.next_functions)
    return names


def _fused_value_and_grad(module, x, labels):
    x = x.detach().clone().requires_grad_()
    value = module(x, labels)
    assert FUSED_NODE in _graph_names(value)
    value.backward()
    return value.detach(), x.grad


def one_hot_dice(x, labels, *, activation="softmax", squared=True, per_class=False, include_background=True,
                 ignore_index=None, aggregation="sample", class_weights=None, smooth=1e-5):
    """Dice with an explicit one-hot target, class axis 1, written out with torch ops."""
    c = x.shape[1]
    p = torch.softmax(x, 1) if activation == "softmax" else torch.sigmoid(x) if activation == "sigmoid" else x
    keep = torch.ones_like(labels, dtype=x.dtype)
    if ignore_index is not None:
        keep = (labels != ignore_index).to(x.dtype)
    y = F.one_hot(torch.where(keep > 0, labels, 0), c).movedim(-1, 1).to(x.dtype) * keep[:, None]
    p = p * keep[:, None]
    if not include_background:
        p, y = p[:, 1:], y[:, 1:]
    axes = tuple(range(2, x.dim())) if per_class else tuple(range(1, x.dim()))
    inter = (p * y).sum(axes)
    den = (p * p).sum(axes) + (y * y).sum(axes) if squared else p.sum(axes) + y.sum(axes)
    if aggregation == "batch":
        inter, den = inter.sum(0), den.sum(0)
    loss = 1 - (2 * inter + smooth) / (den + smooth)
    if per_class:
        w = torch.ones(loss.shape[-1], dtype=x.dtype) if class_weights is None else torch.tensor(
            class_weights if include_background else class_weights[1:], dtype=x.dtype)
        loss = (loss * w).sum(-1) / w.sum()
    return loss.mean()


def _seg(shape=(3, 4, 5, 6), seed=0, dtype=torch.float64, ignore=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    labels = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=g)
    if shape[0] > 1:
        labels[1] = 1  # a sample without background; classes 0, 2, 3 empty there
    if ignore is not None:
        labels[0, 0, :3] = ignore
    return x, labels


OPTIONS = [
    {},
    {"per_class": True},
    {"squared": False},
    {"per_class": True, "include_background": False, "class_weights": [0.0, 1.0, 2.0, 1.0]},
    {"ignore_index": 255},
    {"ignore_index": 255, "per_class": True, "squared": False},
    {"ignore_index": 3, "per_class": True, "include_background": False},
    {"aggregation": "batch", "per_class": True},
    {"aggregation": "batch", "ignore_index": 255, "include_background": False},
]
ACTIVATIONS = ["softmax", "sigmoid", None]


def _module(activation, **kw):
    if activation is None:
        return lt.DiceLoss(**kw)
    return lt.DiceLoss(from_logits=True, activation=activation, **kw)


def _inputs(activation, kw, **seg):
    x, labels = _seg(ignore=kw.get("ignore_index"), **seg)
    return (torch.softmax(x, 1) if activation is None else x), labels


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("kw", OPTIONS, ids=str)
def test_fused_matches_one_hot_dice_float64(activation, kw):
    """Every option with softmax through the derived kernel; with sigmoid and probabilities the
    composed formula (the kernel is the same function compiled: a compile per case costs seconds)."""
    x, labels = _inputs(activation, kw)
    if activation == "softmax":
        value, grad = _fused_value_and_grad(_module(activation, **kw), x, labels)
    else:
        with lt.fused_kernels(False):
            value, grad = value_and_grad(_module(activation, **kw), x, labels)
    ref, ref_grad = value_and_grad(lambda a, b: one_hot_dice(a, b, activation=activation, **kw), x, labels)
    torch.testing.assert_close(value, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("kw", [{}, {"per_class": True, "ignore_index": 255, "include_background": False}],
                         ids=str)
def test_fused_matches_the_composed_path_float32(inductor, activation, kw):
    x, labels = _inputs(activation, kw, shape=(2, 5, 17, 19), dtype=torch.float32)
    module = _module(activation, **kw)
    value, grad = _fused_value_and_grad(module, x, labels)
    with lt.fused_kernels(False):
        composed, composed_grad = value_and_grad(module, x, labels)
    torch.testing.assert_close(value, composed.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, composed_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("ours", "theirs"), [
    ({}, {"softmax": True}),
    ({"include_background": False}, {"softmax": True, "include_background": False}),
    ({"squared": False}, {"softmax": True, "squared_pred": False}),
    ({"aggregation": "batch"}, {"softmax": True, "batch": True}),
    ({"activation": "sigmoid"}, {"sigmoid": True}),
], ids=str)
def test_fused_matches_monai(dtype, ours, theirs):
    x, labels = _seg((2, 4, 24, 20), seed=1, dtype=dtype)
    module = lt.DiceLoss(from_logits=True, per_class=True, **ours)
    value, grad = _fused_value_and_grad(module, x, labels)
    monai = MonaiDiceLoss(to_onehot_y=True, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5) \
        if "squared_pred" not in theirs else MonaiDiceLoss(to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5)
    for key, v in theirs.items():
        setattr(monai, key, v)
    ref, ref_grad = value_and_grad(lambda a, b: monai(a, b[:, None]), x, labels)
    # MONAI forms the intersection from vector norms (|p|^2 + |y|^2 - |p - y|^2) / 2: its value is
    # about 1e-8 relative off in float64, and its small gradient entries more (absolute 1e-11 here)
    f64 = dtype == torch.float64
    torch.testing.assert_close(value, ref.detach(), rtol=1e-7 if f64 else 2e-5, atol=0)
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=(1e-7 if f64 else 1e-4) * scale)


def test_fused_on_a_volume_with_batch_one():
    x, labels = _seg((1, 3, 4, 5, 6), seed=4)
    kw = {"per_class": True, "include_background": False}
    value, grad = _fused_value_and_grad(lt.DiceLoss(from_logits=True, **kw), x, labels)
    ref, ref_grad = value_and_grad(lambda a, b: one_hot_dice(a, b, **kw), x, labels)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_extreme_logits_stay_finite_and_exact(activation):
    x, labels = _seg((2, 4, 8, 8), seed=5, dtype=torch.float32)
    x = 1e3 * torch.sign(x)  # saturated: softmax/sigmoid exactly 0 or 1 in float32
    module = lt.DiceLoss(from_logits=True, activation=activation, per_class=True)
    value, grad = _fused_value_and_grad(module, x, labels)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    ref, ref_grad = value_and_grad(
        lambda a, b: one_hot_dice(a, b, activation=activation, per_class=True), x.double(), labels)
    torch.testing.assert_close(value.double(), ref.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-9)


def test_empty_masks_with_zero_smoothing():
    """Every position ignored: both masks empty, and with smooth=0 the loss is 0 with a zero gradient."""
    x, labels = _seg((2, 3, 4, 4), seed=6)
    labels[:] = 255
    for kw in ({}, {"per_class": True}, {"aggregation": "batch", "per_class": True}):
        value, grad = _fused_value_and_grad(lt.DiceLoss(from_logits=True, smooth=0.0, ignore_index=255, **kw),
                                            x, labels)
        assert value.item() == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))


def test_absent_classes_with_zero_smoothing():
    """Classes missing from the labels: finite loss and gradient (their prediction is pushed to 0)."""
    x, labels = _seg((2, 4, 6, 6), seed=7)
    labels[:] = 1
    module = lt.DiceLoss(from_logits=True, smooth=0.0, per_class=True)
    value, grad = _fused_value_and_grad(module, x, labels)
    ref, ref_grad = value_and_grad(lambda a, b: one_hot_dice(a, b, per_class=True, smooth=0.0), x, labels)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
def test_gradcheck_and_double_backward(activation):
    kw = {"per_class": True, "ignore_index": 255, "squared": activation != "sigmoid"}
    x, labels = _inputs(activation, kw, shape=(2, 3, 3, 4))
    module = _module(activation, **kw)
    x.requires_grad_()
    assert FUSED_NODE in _graph_names(module(x, labels))
    assert torch.autograd.gradcheck(lambda a: module(a, labels), (x,))
    assert torch.autograd.gradgradcheck(lambda a: module(a, labels), (x,))


def test_backward_twice_through_a_retained_graph():
    x, labels = _seg((2, 4, 6, 5), seed=8)
    x.requires_grad_()
    value = lt.DiceLoss(from_logits=True, per_class=True)(x, labels)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    value.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_under_no_grad_and_with_a_scaled_output():
    x, labels = _seg((2, 4, 6, 5), seed=9)
    module = lt.DiceLoss(from_logits=True, per_class=True, reduction="sum")
    with torch.no_grad():
        plain = module(x, labels)
    torch.testing.assert_close(plain, one_hot_dice(x, labels, per_class=True) * 2, rtol=1e-12, atol=0)
    x.requires_grad_()
    (3.0 * module(x, labels)).backward()
    ref_x = x.detach().clone().requires_grad_()
    (6.0 * one_hot_dice(ref_x, labels, per_class=True)).backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-10, atol=1e-14)


def test_bf16_autocast_and_bf16_input(inductor):
    """Under CPU autocast the sums stay float32 (the kernel runs with autocast off)."""
    x, labels = _seg((2, 4, 8, 8), seed=10, dtype=torch.float32)
    module = lt.DiceLoss(from_logits=True, per_class=True)
    plain, plain_grad = _fused_value_and_grad(module, x, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast, cast_grad = _fused_value_and_grad(module, x, labels)
    torch.testing.assert_close(cast, plain, rtol=1e-6, atol=0)
    torch.testing.assert_close(cast_grad, plain_grad, rtol=1e-6, atol=1e-12)
    xb = x.bfloat16().requires_grad_()
    value = module(xb, labels)
    value.backward()
    assert xb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, module(xb.detach().float(), labels), rtol=1e-6, atol=0)


def test_switched_off_runs_the_composed_path():
    x, labels = _seg(seed=11)
    module = lt.DiceLoss(from_logits=True, per_class=True, ignore_index=255)
    with lt.fused_kernels(False):
        value = module(x.clone().requires_grad_(), labels)
    assert FUSED_NODE not in _graph_names(value)
    fused, _ = _fused_value_and_grad(module, x, labels)
    torch.testing.assert_close(value.detach(), fused, rtol=1e-12, atol=1e-14)


def test_torch_compile_composes_the_sums_without_graph_breaks():
    x, labels = _seg(seed=12)
    module = lt.DiceLoss(from_logits=True, per_class=True, ignore_index=3, include_background=False)
    eager, eager_grad = _fused_value_and_grad(module, x, labels)
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    value, grad = value_and_grad(compiled, x, labels)
    torch.testing.assert_close(value.detach(), eager, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-10, atol=1e-14)


def test_a_kernel_past_its_recompile_limit_runs_the_composed_formula(inductor, monkeypatch):
    """A second dtype needs a second compilation; with the limit at 1 dynamo refuses it: one warning,
    the composed formula runs instead and gives the same values. (No traced graphs: torch.compile
    then compiles lossplug's own classes too, as it does a subclass.)"""
    monkeypatch.setattr(compiled._Traces, "LIMIT", 0)
    torch._dynamo.reset()
    module = lt.DiceLoss(from_logits=True, per_class=True, smooth=1e-3)  # a kernel of its own
    try:
        with torch._dynamo.config.patch(recompile_limit=1), pytest.warns(RuntimeWarning, match="derived"):
            _check_float32_then_float64(module, derived_float64=False, smooth=1e-3)
    finally:
        torch._dynamo.reset()


def _check_float32_then_float64(module, derived_float64=True, smooth=1e-5):
    for dtype in (torch.float32, torch.float64):
        x, labels = _seg(seed=13, dtype=dtype)
        if dtype == torch.float32 or derived_float64:
            value, grad = _fused_value_and_grad(module, x, labels)
        else:
            value, grad = value_and_grad(module, x, labels)
            assert FUSED_NODE not in _graph_names(value)
        ref, ref_grad = value_and_grad(
            lambda a, b: one_hot_dice(a, b, per_class=True, smooth=smooth), x.double(), labels
        )
        tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-8}
        torch.testing.assert_close(value.detach().double(), ref.detach(), **tol)
        torch.testing.assert_close(grad.double(), ref_grad, **tol)


# --- the label check taken from the forward kernel ------------------------------------------------

BAD_LABELS = [(5, {}), (-3, {}), (4, {"ignore_index": 255}), (7, {"include_background": False})]


@pytest.mark.parametrize(("bad", "kw"), BAD_LABELS, ids=str)
def test_out_of_range_labels_raise_the_composed_error(bad, kw):
    """The fused path judges the label range its forward kernel took: the same ValueError."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 6, 5), generator=g)
    labels[1, 2, 3] = bad
    loss = lt.DiceLoss(from_logits=True, per_class=True, **kw)
    with lt.fused_kernels(False), pytest.raises(ValueError) as composed:
        loss(x, labels)
    with pytest.raises(ValueError) as fused:
        loss(x.clone().requires_grad_(), labels)
    assert str(fused.value) == str(composed.value)
    assert f"label {bad} is out of range" in str(fused.value)


def test_the_fused_route_takes_no_separate_pass_over_the_labels(monkeypatch):
    from lossplug import torch as _lossplug_torch

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    labels[0, 0, :2] = 255
    loss = lt.DiceLoss(from_logits=True, ignore_index=255)
    expected = loss(x, labels).item()

    def no_pass(t):
        raise AssertionError("a separate min/max pass over the inputs")

    monkeypatch.setattr(_lossplug_torch._xp, "minmax", no_pass)
    value = loss(x, labels)
    assert FUSED_NODE in _graph_names(value)
    assert value.item() == expected
    value.backward()


def test_channels_last_masks_give_the_contiguous_masks_value_and_gradient(inductor):
    """Masks as ``F.one_hot(labels).movedim(-1, 1)`` gives them (channels last): the kernel reads
    them copied to the logits' layout, with the same value and gradient as contiguous masks and as
    the composed formula."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    masks = F.one_hot(torch.randint(0, 3, (2, 8, 8), generator=g), 3).movedim(-1, 1).double()
    assert not masks.is_contiguous()
    loss = lt.DiceLoss(from_logits=True, per_class=True)
    value, grad = value_and_grad(loss, x, masks)
    assert FUSED_NODE in _graph_names(value)
    for other in (masks.contiguous(), None):
        if other is None:
            with lt.fused_kernels(False):
                expected, expected_grad = value_and_grad(loss, x, masks)
        else:
            expected, expected_grad = value_and_grad(loss, x, other)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)
