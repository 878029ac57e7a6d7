"""The torch routes give the reference values: the derived kernels, torch's own kernels, the formula.

Each route is checked against the float64 NumPy reference (lossplug.numpy) and against the
composed formula's value and gradient; Dice on label maps also against a one-hot Dice written out
here with NumPy and against MONAI. The derived kernels (lossplug.frameworks.derived: the formula
compiled with its gradient by torch.compile) only run on large inputs, so the tests using them
lower ``DERIVED_MIN_NUMEL`` and ``NATIVE_UP_TO`` (fixture ``small_fused``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from loss_cases import value_and_grad
from test_subclass_examples import EXAMPLES

import lossplug
import lossplug.torch as lt
from lossplug._spec import REGISTRY
from lossplug.frameworks import compiled, derived, torch_native
from lossplug.frameworks.ops import get_backend

XP = get_backend("torch")

ELEMENTWISE = [
    ("mse", {}, "regression"),
    ("mae", {}, "regression"),
    ("huber", {"delta": 0.7}, "regression"),
    ("bce", {}, "probabilities"),
    ("bce", {"from_logits": True}, "logits"),
    ("weighted_bce", {"pos_weight": 1.5, "neg_weight": 1.5}, "probabilities"),
    ("weighted_bce", {"from_logits": True, "pos_weight": 2.0, "neg_weight": 0.5}, "logits"),
    ("weighted_bce", {"from_logits": True, "pos_weight": 3.0, "neg_weight": 3.0}, "logits"),
    ("weighted_bce", {"pos_weight": 2.0, "neg_weight": 0.5, "label_smoothing": 0.2}, "probabilities"),
    ("bce", {"from_logits": True, "label_smoothing": 0.1}, "logits"),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in ELEMENTWISE]
FUSED, FUSED_IDS = ELEMENTWISE, IDS


@pytest.fixture
def small_fused(monkeypatch):
    """Derived kernels from 64 elements on; a compile failure fails the test instead of falling back.

    Compiled by ``aot_eager`` (the same traced value-and-gradient graph, no code generation: seconds
    less per case); the tests that also take ``inductor`` run inductor's code."""
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 64)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


@pytest.fixture
def inductor(small_fused, monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "inductor")


def _is_fused(value):
    return type(value.grad_fn).__name__ == "DerivedLossBackward"


def _inputs(kind, shape=(7, 23), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "regression":
        return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
    y = torch.rand(shape, generator=g, dtype=dtype)
    if kind == "logits":
        return 3 * torch.randn(shape, generator=g, dtype=dtype), y
    p = torch.rand(shape, generator=g, dtype=dtype) * 0.98 + 0.01
    p[0, :3] = torch.tensor([0.0, 1.0, 1e-9], dtype=dtype)  # clipped: the gradient is 0 there
    return p, y


def _composed(module, x, y):
    """The composed formula, as forward runs it without a fast path."""
    loss, weight = module.terms(x, y)
    return module._reduce(XP, loss, weight)


def _reference(name, kw, x, y, reduction):
    return lossplug.get(name, reduction=reduction, **kw)(x.detach().double().numpy(), y.double().numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("name", "kw", "kind"), FUSED, ids=FUSED_IDS)
def test_fused_value_and_gradient_match_reference(small_fused, name, kw, kind, reduction):
    module = lossplug.get(name, framework="torch", reduction=reduction, **kw)
    x, y = _inputs(kind)
    value, grad = value_and_grad(module, x, y)
    assert _is_fused(value)
    np.testing.assert_allclose(value.item(), _reference(name, kw, x, y, reduction), rtol=1e-12)
    composed_value, composed_grad = value_and_grad(lambda a, b: _composed(module, a, b), x, y)
    np.testing.assert_allclose(value.item(), composed_value.item(), rtol=1e-12)
    torch.testing.assert_close(grad, composed_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(("name", "kw", "kind"), FUSED, ids=FUSED_IDS)
def test_fused_float32_close_to_float64_reference(small_fused, name, kw, kind):
    module = lossplug.get(name, framework="torch", **kw)
    x, y = _inputs(kind, shape=(40, 50), dtype=torch.float32)
    value, grad = value_and_grad(module, x, y)
    assert _is_fused(value)
    np.testing.assert_allclose(value.item(), _reference(name, kw, x, y, "mean"), rtol=2e-6)
    composed_value, composed_grad = value_and_grad(lambda a, b: _composed(module, a, b), x, y)
    np.testing.assert_allclose(value.item(), composed_value.item(), rtol=2e-6)
    torch.testing.assert_close(grad, composed_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "kw", "kind"), ELEMENTWISE, ids=IDS)
def test_native_kernel_route_matches_reference(name, kw, kind, reduction):
    """Without grad (or on small inputs) the route is a torch kernel: still the reference value."""
    kw = dict(kw, label_smoothing=0.1) if "bce" in name else kw
    module = lossplug.get(name, framework="torch", reduction=reduction, **kw)
    x, y = _inputs(kind)
    value, grad = value_and_grad(lambda a, b: module(a, b).sum(), x, y)
    assert not _is_fused(module(x.requires_grad_(), y))
    np.testing.assert_allclose(module(x, y).detach().numpy(), _reference(name, kw, x, y, reduction),
                               rtol=1e-12)
    _, composed_grad = value_and_grad(lambda a, b: _composed(module, a, b).sum(), x.detach(), y)
    torch.testing.assert_close(grad, composed_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(("name", "kw", "kind"), FUSED, ids=FUSED_IDS)
def test_fused_double_backward(small_fused, name, kw, kind):
    module = lossplug.get(name, framework="torch", **kw)
    x, y = _inputs(kind, shape=(9, 10))
    if kind == "probabilities":
        x = x.clamp(0.05, 0.95)  # finite differences must not cross the clip
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: module(a, y), (x,))
    assert torch.autograd.gradgradcheck(lambda a: module(a, y), (x,))
    # create_graph gives the same Hessian-vector product as the composed formula
    v = torch.randn_like(x)
    hvps = []
    for fn in (module, lambda a, b: _composed(module, a, b)):
        (g,) = torch.autograd.grad(fn(x, y), x, create_graph=True)
        hvps.append(torch.autograd.grad((g * v).sum(), x)[0])
    torch.testing.assert_close(hvps[0], hvps[1])


def test_fused_backward_twice_with_retain_graph(small_fused):
    x, y = _inputs("regression")
    x.requires_grad_()
    value = lt.HuberLoss()(x, y)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    value.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_fused_scales_by_the_incoming_gradient(small_fused):
    x, y = _inputs("logits")
    _, grad = value_and_grad(lambda a, b: _composed(lt.BCELoss(from_logits=True), a, b), x, y)
    x.requires_grad_()
    (3.0 * lt.BCELoss(from_logits=True)(x, y)).backward()
    torch.testing.assert_close(x.grad, 3.0 * grad)


def test_fused_not_used_when_the_target_needs_grad(small_fused):
    x, y = _inputs("regression")
    x.requires_grad_(), y.requires_grad_()
    value = lt.MSELoss()(x, y)
    assert not _is_fused(value)
    value.backward()
    torch.testing.assert_close(y.grad, -x.grad)


def test_a_subclass_overriding_terms_is_not_bypassed(small_fused):
    class DoubledMSE(lt.MSELoss):
        def terms(self, y_pred, y_true):
            loss, weight = super().terms(y_pred, y_true)
            return 2 * loss, weight

    x, y = _inputs("regression")
    x.requires_grad_()
    np.testing.assert_allclose(DoubledMSE()(x, y).item(), 2 * lt.MSELoss()(x, y).item(), rtol=1e-12)


FocalBCELoss = EXAMPLES["FocalBCELoss"]  # docs/subclassing.md's examples, as the page writes them
DenominatorSmoothedDice = EXAMPLES["DenominatorSmoothedDice"]


def _eager_focal(x, y, gamma):
    """The focal BCE written out in torch ops, without lossplug."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    return ((1 - torch.exp(-bce)) ** gamma * bce).mean()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("labels", ["int64", "float"])
def test_a_subclass_gets_the_derived_kernel_of_its_own_formula(inductor, dtype, labels):
    """terms overridden: the derived kernel of the subclass's formula runs, with its values and
    gradients; the base class's input handling (int64 targets) comes with it; gamma = 0 is BCE."""
    x, y = _inputs("logits", shape=(16, 33), dtype=dtype)
    y = (y > 0.5).to(torch.int64 if labels == "int64" else dtype)
    loss = FocalBCELoss(gamma=2.0, from_logits=True)
    value, grad = value_and_grad(loss, x, y)
    assert _is_fused(value)
    expected, expected_grad = value_and_grad(lambda a, b: _eager_focal(a, b.to(dtype), 2.0), x, y)
    tol = {} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 1e-8}
    torch.testing.assert_close(value, expected, **tol)
    torch.testing.assert_close(grad, expected_grad, **tol)
    loss.gamma = 0.0  # a new attribute value: dynamo's guard sees it, the kernel follows
    torch.testing.assert_close(value_and_grad(loss, x, y)[0], lt.BCELoss(from_logits=True)(x, y.to(dtype)))


def test_a_dice_subclass_with_its_own_score_gets_its_derived_kernel(small_fused):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 4, 6, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 6, 5), generator=g)
    value, grad = value_and_grad(DenominatorSmoothedDice(from_logits=True, smooth=0.5), x, labels)
    assert _is_fused(value)

    def by_hand(a, b):
        p, y = torch.softmax(a, 1), torch.nn.functional.one_hot(b, 4).movedim(-1, 1).to(a.dtype)
        inter, den = (p * y).sum((1, 2, 3)), (p * p).sum((1, 2, 3)) + (y * y).sum((1, 2, 3))
        return (1 - 2 * inter / (den + 0.5)).mean()

    expected, expected_grad = value_and_grad(by_hand, x, labels)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


# --- class losses and KL: derived kernels, or torch's kernels with lossplug's reduction rules -------


@pytest.fixture(params=["fused", "native"])
def route(request, monkeypatch):
    """Run a test through the fused kernel (asserting it ran) and through torch's own kernels."""
    if request.param == "fused":
        monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 64)
        monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
        monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            yield lambda value: _is_fused(value)
    else:
        with lt.fused_kernels(False):
            yield lambda value: not _is_fused(value)


def _class_inputs(shape=(6, 5, 4), soft=False, probs=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    if probs:
        x = torch.softmax(x, 1)
    if soft:
        y = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
    else:
        y = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=g)
    return x, y


def _numpy_class_axis_last(x, y, labels):
    xn = np.moveaxis(x.detach().numpy(), 1, -1)
    yn = y.numpy() if labels else np.moveaxis(y.numpy(), 1, -1)
    return xn, yn


def _assert_route_matches(route, module, x, y, ref):
    """The route taken (``route``), the NumPy float64 value ``ref``, the composed formula's gradient."""
    value, grad = value_and_grad(module, x, y)
    assert route(value)
    np.testing.assert_allclose(value.item(), ref, rtol=1e-12)
    _, composed_grad = value_and_grad(lambda a, b: _composed(module, a, b), x, y)
    torch.testing.assert_close(grad, composed_grad)


SPARSE = [
    {},
    {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.0]},
    {"ignore_index": 2},
    {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.0], "ignore_index": 0, "label_smoothing": 0.2},
    {"label_smoothing": 0.1},
]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kw", SPARSE, ids=str)
def test_sparse_ce_routes(route, kw, reduction):
    module = lt.SparseCategoricalCELoss(from_logits=True, reduction=reduction, **kw)
    x, labels = _class_inputs()
    ref = lossplug.numpy.sparse_categorical_ce(
        *_numpy_class_axis_last(x, labels, True), from_logits=True, reduction=reduction, **kw
    )
    _assert_route_matches(route, module, x, labels, ref)


@pytest.mark.parametrize("kw", [{}, {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.0]}], ids=str)
def test_sparse_ce_all_ignored_gives_zero_not_nan(route, kw):
    x, labels = _class_inputs()
    value, grad = value_and_grad(lt.SparseCategoricalCELoss(from_logits=True, ignore_index=3, **kw),
                                  x, torch.full_like(labels, 3))
    assert route(value)
    assert value.item() == 0.0
    assert torch.all(grad == 0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kw", [{}, {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.0], "label_smoothing": 0.1}],
                         ids=str)
def test_categorical_ce_routes(route, kw, reduction):
    module = lt.CategoricalCELoss(from_logits=True, reduction=reduction, **kw)
    x, y = _class_inputs(soft=True)
    ref = lossplug.numpy.categorical_ce(
        *_numpy_class_axis_last(x, y, False), from_logits=True, reduction=reduction, **kw
    )
    _assert_route_matches(route, module, x, y, ref)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_kl_div_routes(route, from_logits, reduction):
    module = lt.KLDivLoss(from_logits=from_logits, reduction=reduction)
    x, p = _class_inputs(soft=True, probs=not from_logits)
    p[0, :2] = 0.0  # zero-probability terms count 0
    p = p / p.sum(1, keepdim=True)
    if not from_logits:
        x[1, 2, 0] = 1e-9  # clipped to eps: no gradient there
    ref = lossplug.numpy.kl_div(*_numpy_class_axis_last(x, p, False), from_logits=from_logits,
                                reduction=reduction)
    _assert_route_matches(route, module, x, p, ref)


# --- Dice on label maps without a one-hot tensor --------------------------------------------------


def _dice_by_hand(p, labels, *, squared, per_class, include_background, ignore_index, aggregation,
                  class_weights, smooth=1e-5):
    """Dice written out with an explicit one-hot mask, class axis 1, in NumPy."""
    c = p.shape[1]
    keep = np.ones(labels.shape) if ignore_index is None else (labels != ignore_index).astype(float)
    clean = np.where(keep > 0, labels, 0)
    y = np.moveaxis(np.eye(c)[clean], -1, 1) * keep[:, None]
    p = p * keep[:, None]
    if not include_background:
        p, y = p[:, 1:], y[:, 1:]
    axes = tuple(range(2, p.ndim)) if per_class else tuple(range(1, p.ndim))
    inter = (p * y).sum(axes)
    den = ((p**2).sum(axes) + (y**2).sum(axes)) if squared else (p.sum(axes) + y.sum(axes))
    if aggregation == "batch":
        inter, den = inter.sum(0), den.sum(0)
    loss = 1 - (2 * inter + smooth) / (den + smooth)
    if per_class:
        w = np.ones(loss.shape[-1]) if class_weights is None else np.asarray(
            class_weights if include_background else class_weights[1:])
        loss = (loss * w).sum(-1) / w.sum()
    return loss.mean()


DICE = [
    {},
    {"per_class": True},
    {"per_class": True, "include_background": False, "class_weights": [0.0, 1.0, 2.0, 1.0]},
    {"ignore_index": 255},
    {"ignore_index": 255, "per_class": True, "squared": False},
    {"include_background": False, "aggregation": "batch"},
    {"per_class": True, "aggregation": "batch", "ignore_index": 255, "include_background": False},
]


def _seg(shape=(3, 4, 5, 6), seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    labels = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=g)
    labels[0, 0, :3] = 255
    labels[1] = 1  # a sample without background, and classes 0, 2, 3 empty there
    return x, labels


@pytest.mark.parametrize("kw", DICE, ids=str)
def test_dice_label_map_torch_matches_one_hot_by_hand(kw):
    x, labels = _seg()
    if "ignore_index" not in kw:
        labels = torch.where(labels == 255, 0, labels)
    full = dict(squared=True, per_class=False, include_background=True, ignore_index=None,
                aggregation="sample", class_weights=None) | kw
    ref = _dice_by_hand(torch.softmax(x, 1).numpy(), labels.numpy(), **full)
    module = lt.DiceLoss(from_logits=True, **kw)
    value, grad = value_and_grad(module, x, labels)
    np.testing.assert_allclose(value.item(), ref, rtol=1e-12)
    # the gradient is the one-hot formula's: compare with the mask path on the one-hot target
    if "ignore_index" not in kw:
        onehot = torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).double()
        masks = lt.DiceLoss(from_logits=True, activation="softmax", **kw)
        _, mask_grad = value_and_grad(masks, x, onehot)
        torch.testing.assert_close(grad, mask_grad)


@pytest.mark.parametrize("kw", DICE, ids=str)
def test_dice_label_map_numpy_matches_one_hot_by_hand(kw):
    x, labels = _seg()
    if "ignore_index" not in kw:
        labels = torch.where(labels == 255, 0, labels)
    full = dict(squared=True, per_class=False, include_background=True, ignore_index=None,
                aggregation="sample", class_weights=None) | kw
    p = torch.softmax(x, 1).numpy()
    ref = _dice_by_hand(p, labels.numpy(), **full)
    value = lossplug.numpy.dice(np.moveaxis(p, 1, -1), labels.numpy(), **kw)
    np.testing.assert_allclose(value, ref, rtol=1e-12)


def test_dice_label_map_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    x, labels = _seg((2, 3, 16, 16))
    labels = torch.where(labels == 255, 0, labels)
    ours = lt.DiceLoss(from_logits=True, per_class=True)(x, labels)
    theirs = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5
    )(x, labels[:, None])
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-6)


def test_sum_by_label_numpy_and_torch():
    labels = np.array([[0, 2, 2, 1], [3, 3, 3, 0]])
    values = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 0.25, 8.0]])
    expected = np.array([[1.0, 4.0, 5.0, 0.0], [8.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(get_backend("numpy").sum_by_label(values, labels, 4), expected)
    out = XP.sum_by_label(torch.tensor(values), torch.tensor(labels), 4)
    np.testing.assert_array_equal(out.numpy(), expected)


# --- torch.compile: no graph breaks, eager values, fast paths selected or not ---------------------

COMPILE = [
    (lt.MSELoss(), "regression"),
    (lt.MAELoss(reduction="sum"), "regression"),
    (lt.HuberLoss(delta=0.5), "regression"),
    (lt.BCELoss(), "probabilities"),
    (lt.BCELoss(from_logits=True), "logits"),
    (lt.WeightedBCELoss(from_logits=True, pos_weight=2.0, neg_weight=2.0), "logits"),
]


@pytest.mark.parametrize(("module", "kind"), COMPILE,
                         ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_compile_fullgraph_skips_the_fused_function(small_fused, module, kind):
    """Large enough for the fused kernel in eager mode; compiled, the native kernel runs instead."""
    x, y = _inputs(kind)
    eager, eager_grad = value_and_grad(module, x, y)
    assert _is_fused(eager)
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    value, grad = value_and_grad(compiled, x, y)
    torch.testing.assert_close(value, eager)
    torch.testing.assert_close(grad, eager_grad)


@pytest.mark.parametrize("module", [
    lt.SparseCategoricalCELoss(from_logits=True, ignore_index=1, class_weights=[1.0, 2.0, 1.0, 1.0, 3.0]),
    lt.DiceLoss(from_logits=True, per_class=True, include_background=False),
], ids=lambda m: type(m).__name__)
def test_compile_fullgraph_class_routes(module):
    x, labels = _class_inputs()
    eager, eager_grad = value_and_grad(module, x, labels)
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    value, grad = value_and_grad(compiled, x, labels)
    torch.testing.assert_close(value, eager)
    torch.testing.assert_close(grad, eager_grad)


def test_fused_bce_logits_keeps_precision_on_confident_logits(small_fused):
    """Confident, correct logits: each term is ~1e-7; forming it per element keeps float32 exact."""
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(40, 50, generator=g) > 0.5).float()
    x = (2 * y - 1) * (12 + 4 * torch.rand(40, 50, generator=g))
    value, _ = value_and_grad(lt.BCELoss(from_logits=True), x, y)
    assert _is_fused(value)
    ref = lossplug.numpy.bce(x.double().numpy(), y.double().numpy(), from_logits=True)
    np.testing.assert_allclose(value.item(), ref, rtol=1e-5)


@pytest.mark.parametrize(("kw", "bad"), [({}, "y_pred"), ({}, "y_true"), ({"from_logits": True}, "y_true")])
def test_fused_pass_raises_the_value_check_errors(small_fused, kw, bad):
    """The range checks run inside the fused pass and raise what the composed path raises."""
    x, y = _inputs("logits" if kw else "probabilities")
    if bad == "y_pred":
        x[3, 4] = 1.5
    else:
        y[2, 2] = -0.25
    module = lt.BCELoss(**kw)
    with pytest.raises(ValueError) as composed:
        lt.BCELoss(**kw)(x, y)  # no grad: the native-kernel route, checks before computing
    with pytest.raises(ValueError) as fused:
        module(x.clone().requires_grad_(), y)
    assert str(fused.value) == str(composed.value)
    assert bad in str(fused.value)
    with lossplug.value_checks(False):
        module(x.clamp(0, 1).requires_grad_() if bad == "y_pred" else x.clone().requires_grad_(), y)


@pytest.mark.parametrize("kw", [{"per_class": True}, {"ignore_index": 255, "squared": False},
                                {"include_background": False}], ids=str)
def test_dice_label_map_double_backward(kw):
    x, labels = _seg((2, 3, 3, 4))
    if "ignore_index" not in kw:
        labels = torch.where(labels == 255, 0, labels)
    module = lt.DiceLoss(from_logits=True, **kw)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: module(a, labels), (x,))
    assert torch.autograd.gradgradcheck(lambda a: module(a, labels), (x,))


# --- the fused class-loss kernels: 2-D input, float32, double backward, checks, fallback ----------

CLASS_FUSED = [
    (lt.CategoricalCELoss(from_logits=True, label_smoothing=0.1), "soft"),
    (lt.CategoricalCELoss(from_logits=True, class_weights=[1.0, 2.0, 0.5, 3.0, 1.0]), "soft"),
    (lt.SparseCategoricalCELoss(from_logits=True), "labels"),
    (lt.SparseCategoricalCELoss(from_logits=True, ignore_index=1, class_weights=[1.0, 2.0, 0.5, 3.0, 1.0],
                                label_smoothing=0.2), "labels"),
    (lt.KLDivLoss(from_logits=True), "soft"),
    (lt.KLDivLoss(), "probs"),
]
CLASS_IDS = [f"{type(m).__name__}-{m.extra_repr()}" for m, _ in CLASS_FUSED]


def _class_case(kind, shape, dtype=torch.float64):
    x, y = _class_inputs(shape, soft=kind != "labels", probs=kind == "probs")
    return x.to(dtype), (y.to(dtype) if y.is_floating_point() else y)


@pytest.mark.parametrize("shape", [(40, 5), (3, 5, 4, 6)], ids=str)
@pytest.mark.parametrize(("module", "kind"), CLASS_FUSED, ids=CLASS_IDS)
def test_fused_class_kernels_match_torch_nn_composed(small_fused, module, kind, shape):
    """Float64 against the composed formula; float32 within float32 rounding of it."""
    x, y = _class_case(kind, shape)
    value, grad = value_and_grad(module, x, y)
    assert _is_fused(value)
    composed, composed_grad = value_and_grad(lambda a, b: _composed(module, a, b), x, y)
    np.testing.assert_allclose(value.item(), composed.item(), rtol=1e-12)
    torch.testing.assert_close(grad, composed_grad, rtol=1e-10, atol=1e-15)
    value32, grad32 = value_and_grad(module, x.float(), y.float() if y.is_floating_point() else y)
    assert _is_fused(value32) and value32.dtype == torch.float32
    np.testing.assert_allclose(value32.item(), composed.item(), rtol=2e-6)
    torch.testing.assert_close(grad32, composed_grad.float(), rtol=1e-4, atol=1e-7)


def test_fused_sparse_ce_matches_torch_cross_entropy(small_fused):
    """Independent values: torch.nn.functional.cross_entropy with weights, ignore_index, smoothing."""
    x, labels = _class_case("labels", (30, 5, 7))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0], dtype=torch.float64)
    kw = dict(ignore_index=2, label_smoothing=0.15)
    value, grad = value_and_grad(
        lt.SparseCategoricalCELoss(from_logits=True, class_weights=w.tolist(), **kw), x, labels)
    assert _is_fused(value)
    expected, expected_grad = value_and_grad(
        lambda a, b: torch.nn.functional.cross_entropy(a, b, weight=w, **kw), x, labels)
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-12)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize(("module", "kind"), CLASS_FUSED, ids=CLASS_IDS)
def test_fused_class_double_backward(small_fused, module, kind):
    x, y = _class_case(kind, (4, 5, 4))
    if kind == "probs":
        x = torch.softmax(torch.randn(4, 5, 4, dtype=torch.float64), 1).clamp(0.05)  # no clip crossing
    x.requires_grad_()
    assert _is_fused(module(x, y))
    assert torch.autograd.gradgradcheck(lambda a: module(a, y), (x,))


@pytest.mark.parametrize(("module", "kind", "spoil", "message"), [
    (lt.SparseCategoricalCELoss(from_logits=True), "labels", ("y", 5), "label 5 is out of range"),
    (lt.SparseCategoricalCELoss(from_logits=True, ignore_index=-1), "labels", ("y", -3), "label -3"),
    (lt.CategoricalCELoss(from_logits=True), "soft", ("y", -0.5), "y_true (targets)"),
    (lt.KLDivLoss(), "probs", ("x", 1.5), "y_pred (probabilities"),
    (lt.KLDivLoss(from_logits=True), "soft", ("y", float("nan")), "y_true (targets)"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_fused_class_kernels_raise_the_value_check_errors(small_fused, module, kind, spoil, message):
    x, y = _class_case(kind, (6, 5, 4))
    target = y if spoil[0] == "y" else x
    target.view(-1)[7] = spoil[1]
    with pytest.raises(ValueError, match=re.escape(message)):
        module(x.clone().requires_grad_(), y)


def test_sparse_ce_ignored_labels_may_lie_outside_the_classes(small_fused):
    x, labels = _class_case("labels", (6, 5, 4))
    labels[0, :2] = 255
    value, grad = value_and_grad(lt.SparseCategoricalCELoss(from_logits=True, ignore_index=255), x, labels)
    assert _is_fused(value)
    expected = torch.nn.functional.cross_entropy(x, labels, ignore_index=255)
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-12)
    assert torch.all(grad[0, :, :2] == 0)


def test_fused_kernels_switch(small_fused, monkeypatch):
    x, y = _inputs("regression")
    with lt.fused_kernels(False):
        assert not _is_fused(value_and_grad(lt.MSELoss(), x, y)[0])
    assert _is_fused(value_and_grad(lt.MSELoss(), x, y)[0])


FALLBACK = """
import warnings, torch, torch._inductor.config as config
import lossplug.torch as lt
from lossplug.frameworks import derived
config.cpp.cxx = ("/nonexistent/c++",)
derived.DERIVED_MIN_NUMEL, derived.NATIVE_UP_TO = 64, {}
x = torch.randn(50, 40, dtype=torch.float64, requires_grad=True)
y = torch.randn(50, 40, dtype=torch.float64)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = lt.HuberLoss()(x, y)
    value.backward()
    again = lt.HuberLoss()(x, y)
expected = torch.nn.functional.huber_loss(x, y)
assert abs(value.item() - expected.item()) < 1e-12, (value, expected)
assert type(value.grad_fn).__name__ != "DerivedLossBackward"
messages = [str(w.message) for w in caught if "derived kernel" in str(w.message)]
assert len(messages) == 1, messages
print(messages[0])
"""


def test_a_failed_compile_falls_back_to_torch_kernels(tmp_path):
    """No usable C++ compiler: one warning, torch's own kernel, the same value; nothing cached."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    proc = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiling the derived kernel of HuberLoss failed" in proc.stdout


# --- torch.func transforms: no fused kernel, no custom autograd function, no value check ----------

FUNC = [
    (lt.MSELoss(), "regression"),
    (lt.HuberLoss(delta=0.5), "regression"),
    (lt.BCELoss(from_logits=True), "logits"),
    (lt.WeightedBCELoss(pos_weight=2.0), "probabilities"),
    (lt.CategoricalCELoss(from_logits=True), "soft"),
    (lt.SparseCategoricalCELoss(from_logits=True, ignore_index=1), "labels"),
    (lt.KLDivLoss(from_logits=True), "soft"),
    (lt.DiceLoss(from_logits=True, per_class=True), "labels"),
]


@pytest.mark.parametrize(("module", "kind"), FUNC,
                         ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_torch_func_grad_and_vmap(small_fused, module, kind):
    """Per-sample gradients with torch.func: the values and gradients of plain autograd."""
    if kind in ("regression", "logits", "probabilities"):
        x, y = _inputs(kind, shape=(6, 20))
        x = x.clamp(0.05, 0.95) if kind == "probabilities" else x
    else:
        x, y = _class_case(kind, (6, 5, 4))
    per_sample = torch.func.vmap(torch.func.grad(lambda a, b: module(a[None], b[None])))(x, y)
    for i in range(x.shape[0]):
        _, expected = value_and_grad(module, x[i:i + 1], y[i:i + 1])
        torch.testing.assert_close(per_sample[i], expected[0])
    values = torch.func.vmap(lambda a, b: module(a[None], b[None]))(x, y)
    torch.testing.assert_close(values, torch.stack([module(x[i:i + 1], y[i:i + 1]) for i in range(6)]))


def test_past_the_recompile_limit_the_torch_kernels_take_over(small_fused):
    """A compiled kernel dynamo will not specialise again: one warning, torch's kernel, same value."""
    x32, y32 = _inputs("regression", shape=(30, 7), dtype=torch.float32)
    lt.HuberLoss()(x32.clone().requires_grad_(), y32)  # compiled for float32 (if not yet)
    x, y = _inputs("regression", shape=(30, 7), dtype=torch.float64)
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(recompile_limit=1):
            lt.HuberLoss()(x32.clone().requires_grad_(), y32)  # float32 again: the one allowed entry
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value, grad = value_and_grad(lt.HuberLoss(), x, y)  # float64: a second one
    finally:
        torch._dynamo.reset()
    assert not _is_fused(value)
    assert any("running the derived kernel of HuberLoss failed" in str(w.message) for w in caught)
    expected, expected_grad = value_and_grad(torch.nn.functional.huber_loss, x, y)
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-12)
    torch.testing.assert_close(grad, expected_grad)
    assert _is_fused(value_and_grad(lt.HuberLoss(), x, y)[0])  # and the kernel is not given up


def test_fused_kernels_switched_off_between_forward_and_second_backward(small_fused):
    x, y = _inputs("logits")
    x.requires_grad_()
    value = lt.BCELoss(from_logits=True)(x, y)
    assert _is_fused(value)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    with lt.fused_kernels(False):
        value.backward()  # the kernel cannot rerun: the reference expression gives the gradient
    torch.testing.assert_close(x.grad, 2 * first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_every_derived_kernel_keeps_the_input_dtype(small_fused, monkeypatch, dtype):
    """Value and gradient come out in the input's dtype (a float64 one would cost time and memory);
    float32 through inductor's generated code, float64 through the traced graph (aot_eager)."""
    if dtype == torch.float32:
        monkeypatch.setattr(compiled, "BACKEND", "inductor")
    cases = [(lossplug.get(name, "torch", **kw), kind) for name, kw, kind in ELEMENTWISE] + CLASS_FUSED
    for module, kind in cases:
        if kind in ("regression", "logits", "probabilities"):
            x, y = _inputs(kind, shape=(8, 12), dtype=dtype)
        else:
            x, y = _class_case(kind, (4, 5, 8), dtype)
        value, grad = value_and_grad(module, x, y)
        assert _is_fused(value), module
        assert value.dtype == dtype and grad.dtype == dtype and grad.shape == x.shape, module
        with lt.fused_kernels(False):
            expected, expected_grad = value_and_grad(module, x, y)
        tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-7}
        torch.testing.assert_close(value, expected, **tol)  # inductor's code: the formula's numbers
        torch.testing.assert_close(grad, expected_grad, **tol)


@pytest.mark.parametrize("kw", [{}, {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.0]}, {"reduction": "sum"},
                                {"ignore_index": 255, "label_smoothing": 0.1}], ids=str)
@pytest.mark.parametrize("bad", [-100, 5, -1])
def test_sparse_ce_bad_labels_raise_our_error_in_every_route(route, kw, bad):
    """-100 is torch's default ignore_index: without ignore_index lossplug must still reject it; the
    native route lets torch's kernel find bad labels and then names them; the fused route reads
    the range in its kernel (and its class-weight denominator must not index out of range)."""
    x, labels = _class_inputs()
    labels[1, 2] = bad
    module = lt.SparseCategoricalCELoss(from_logits=True, **kw)
    with pytest.raises(ValueError, match=f"label {bad} is out of range") as caught:
        module(x.clone().requires_grad_(), labels)
    assert caught.value.__context__ is None  # not "during handling of IndexError"
    with lossplug.value_checks(False), lt.fused_kernels(False), pytest.raises((IndexError, RuntimeError)):
        module(x, labels)  # unchecked, torch's own error


def _fused_equals_composed(module, x, y):
    value, grad = value_and_grad(module, x, y)
    assert _is_fused(value)
    with lt.fused_kernels(False):
        expected, expected_grad = value_and_grad(module, x, y)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


def _spy_kernel_labels(monkeypatch):
    seen = []
    run = compiled.Kernel.run

    def spy(self, module, x, y, ranges, label_axis, narrow_labels):
        seen.append((y.dtype, None if narrow_labels is None else narrow_labels.dtype))
        return run(self, module, x, y, ranges, label_axis, narrow_labels)

    monkeypatch.setattr(compiled.Kernel, "run", spy)
    return seen


@pytest.mark.parametrize(("name", "kw", "copy"), [
    ("sparse_categorical_ce", {}, torch.int32),
    ("dice", {"per_class": True}, torch.float32),
    ("dice", {"ignore_index": 255, "include_background": False}, torch.float32),
    ("tversky", {"per_class": True}, torch.float32),
    ("jaccard", {}, torch.float32),
    ("generalized_dice", {"ignore_index": -100}, torch.float32),
], ids=str)
@pytest.mark.parametrize("classes", [2, 5])
def test_int64_label_maps_reach_the_kernel_as_a_narrow_copy(
        small_fused, monkeypatch, name, kw, copy, classes):
    """The overlap losses compare the labels with each class: their kernel reads an int64 label map
    as float32 (compared in float lanes); the class losses gather at the labels, as int32 from 4
    classes on. The checks' ranges read the int64 labels (a label beyond the copy's range is named)."""
    seen = _spy_kernel_labels(monkeypatch)
    if copy == torch.int32 and classes < 4:
        copy = None  # with 2 classes the copy would only add to the peak memory
    module = lossplug.get(name, "torch", from_logits=True, **kw)
    x, labels = _class_inputs(shape=(4, classes, 6, 7))
    ignore = kw.get("ignore_index")
    if ignore is not None:
        labels[0, :2] = ignore
    _fused_equals_composed(module, x, labels)
    assert seen == [(torch.int64, copy)]
    for bad in (2**40, 2**24 + 1, -1):
        labels[1, 2, 3] = bad
        named = rf"label ({bad}|{re.escape(f'{bad:g}')}) is out of range"
        with pytest.raises(ValueError, match=named) as caught:
            module(x.clone().requires_grad_(), labels)
        assert caught.value.__context__ is None


def test_a_total_over_many_classes_gathers_at_int32_labels(small_fused, monkeypatch):
    """Dice over every class at once compares the labels with each class up to
    ``COMPARED_TOTALS_UP_TO`` classes; past it the formula gathers at the labels (int32 copies)."""
    seen = _spy_kernel_labels(monkeypatch)
    classes = get_backend("torch").COMPARED_TOTALS_UP_TO + 1
    x, labels = _class_inputs(shape=(2, classes, 5, 6))
    for kw, copy in (({}, torch.int32), ({"per_class": True}, torch.float32)):
        module = lt.DiceLoss(from_logits=True, **kw)
        _fused_equals_composed(module, x, labels)
        assert seen[-1] == (torch.int64, copy)


def test_an_ignore_index_that_float32_cannot_hold_keeps_the_int64_labels(small_fused, monkeypatch):
    """2**24 + 1 has no float32 of its own (it would read as 2**24, a different label): the kernel
    then reads the labels as given, and the positions marked with it are still left out."""
    seen = _spy_kernel_labels(monkeypatch)
    ignore = 2**24 + 1
    module = lt.DiceLoss(from_logits=True, per_class=True, ignore_index=ignore)
    x, labels = _class_inputs(shape=(4, 3, 6, 7))
    labels[0, :3] = ignore
    _fused_equals_composed(module, x, labels)
    assert seen == [(torch.int64, None)]


def test_which_sizes_take_the_derived_kernel_follow_the_class_count():
    """The sizes of ``derived.NATIVE_UP_TO``: torch's kernel below them. On the CPU torch's
    log_softmax is slow over fewer classes than a vector has lanes (16 on AVX-512, 8 on AVX2) in
    2-D input; with 2 classes soft-target CE and KL keep torch's kernel at every size;
    segmentation input has sizes of its own; probabilities
    (no torch kernel) take the derived kernel from ``TRACED_MIN_NUMEL``, a subclass's formula
    from ``DERIVED_MIN_NUMEL``."""
    def size(name, shape, native=True, own=True):
        return derived.min_numel(REGISTRY[name], native, torch.empty(shape), 1, own)

    sizes = derived.NATIVE_UP_TO
    assert size("categorical_ce", (100, 2)) is None and size("kl_div", (100, 2)) is None
    assert size("sparse_categorical_ce", (100, 2)) == sizes["sparse_categorical_ce"].rows[0][1]
    for name in ("sparse_categorical_ce", "categorical_ce", "kl_div"):
        assert size(name, (100, derived.LANES - 1)) == 1 << 13
        assert size(name, (100, derived.LANES)) == sizes[name].rows[-1][1]
        assert size(name, (100, 64)) == sizes[name].rows[-1][1] >= 1 << 16
        assert size(name, (2, 2, 8, 8)) == sizes[name].spatial
    assert size("mse", (100, 10)) == sizes["elementwise"]
    assert [derived.float_lanes(c) for c in ("AVX512", "AVX512_BF16", "AVX2", "DEFAULT")] == [16, 16, 8, 8]
    assert size("bce", (100,), native=False) == derived.TRACED_MIN_NUMEL
    assert size("bce", (100,), native=False, own=False) == derived.DERIVED_MIN_NUMEL
    assert torch_native.route_for("bce", {"from_logits": False}) is None
    assert torch_native.route_for("kl_div", {"from_logits": False}) is not None


def test_on_a_gpu_a_loss_with_a_torch_kernel_keeps_it_at_every_size():
    """``NATIVE_AT_EVERY_SIZE_ON`` (measured on an H200): torch's kernel wherever torch has one; a
    loss without one (BCE on probabilities, a subclass's formula) still takes the derived kernel."""
    import types

    def on_cuda(shape):
        return types.SimpleNamespace(device=torch.device("cuda"), shape=shape, dim=lambda: len(shape))

    for name in ("mse", "huber", "bce", "sparse_categorical_ce", "categorical_ce", "kl_div"):
        for shape in ((10_000_000,), (4096, 1000), (8, 4, 256, 256)):
            assert derived.min_numel(REGISTRY[name], True, on_cuda(shape), 1) is None, (name, shape)
    assert derived.min_numel(REGISTRY["bce"], False, on_cuda((100,)), None) == derived.TRACED_MIN_NUMEL
    assert derived.min_numel(REGISTRY["dice"], False, on_cuda((8, 4, 64, 64)), 1, own=False) == (
        derived.DERIVED_MIN_NUMEL)


@pytest.mark.parametrize("module", [lt.BCELoss(), lt.WeightedBCELoss(pos_weight=2.0), lt.PoissonLoss()],
                         ids=lambda m: type(m).__name__)
def test_a_loss_without_a_torch_kernel_is_derived_from_a_few_thousand_elements(module):
    x, y = _inputs("probabilities", shape=(8, derived.TRACED_MIN_NUMEL // 8))
    _fused_equals_composed(module, x, y)
    small_x, small_y = x[:, :8], y[:, :8]
    assert not _is_fused(value_and_grad(module, small_x, small_y)[0])


def test_a_kernel_called_through_dynamo_takes_the_dynamo_size():
    """Class weights (tensors) or a subclass's formula: the kernel is not traced but goes through
    dynamo (~150 us a call), so the loss takes the derived kernel from ``DERIVED_MIN_NUMEL``, not
    from ``TRACED_MIN_NUMEL``."""
    plain = lt.DiceLoss(from_logits=True, per_class=True)
    weighted = lt.DiceLoss(from_logits=True, per_class=True, class_weights=[1.0, 2.0, 0.5, 1.0])
    assert derived.traced(lt.DiceLoss, plain.params())
    assert not derived.traced(lt.DiceLoss, weighted.params())
    assert not derived.traced(FocalBCELoss, FocalBCELoss(gamma=2.0).params())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g, dtype=torch.float64)  # 8192 elements: between the two
    labels = torch.randint(0, 4, (2, 32, 32), generator=g)
    assert derived.TRACED_MIN_NUMEL <= x.numel() < derived.DERIVED_MIN_NUMEL
    assert _is_fused(value_and_grad(plain, x, labels)[0])
    assert not _is_fused(value_and_grad(weighted, x, labels)[0])
