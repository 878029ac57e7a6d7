"""Inputs torch and NumPy accept: the right number, or an error that names the problem (issue 10).

Expected values come from torch.nn (``F.cross_entropy``, ``F.kl_div``, ``F.huber_loss``, ...) or
from float64 NumPy written here from the formulas, never from lossplug itself. Each torch case
runs with lossplug's derived kernels on and off (``fused_kernels``), and with and without a
gradient (the kernels run only where one is needed).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossplug
import lossplug.numpy as lnp
import lossplug.torch as lt
from lossplug._spec import LossParameterError

KERNELS = pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "no-kernels"])


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a kernel's compile notice
        yield


def _run(module, y_pred, y_true, kernels, grad=True):
    with lt.fused_kernels(kernels):
        x = y_pred.detach().clone().requires_grad_(grad)
        out = module(x, y_true)
        if grad and out.numel() and out.dim() == 0 and torch.isfinite(out):
            out.backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()
        return out.detach()


def _close(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(
        torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), rtol=rtol, atol=atol
    )


# --- 1. "none" of a class loss: one value per position ------------------------------------------

SHAPES = [(6, 4), (3, 4, 5), (2, 3, 4, 5)]


@KERNELS
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    "params",
    [{}, {"class_weights": [0.5, 2.0, 1.0, 0.25][:3], "ignore_index": 1}, {"label_smoothing": 0.1}],
    ids=["plain", "cw-ignore", "ls"],
)
def test_sparse_ce_none_is_per_position_as_torch(shape, params, kernels):
    shape = (shape[0], 3, *shape[2:])
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    labels = torch.randint(0, 3, (shape[0], *shape[2:]))
    ours = lt.SparseCategoricalCELoss(from_logits=True, reduction="none", **params)
    w = params.get("class_weights")
    expected = F.cross_entropy(
        x,
        labels,
        reduction="none",
        weight=None if w is None else torch.tensor(w, dtype=torch.float64),
        ignore_index=params.get("ignore_index", -100),
        label_smoothing=params.get("label_smoothing", 0.0),
    )
    out = _run(ours, x, labels, kernels)
    assert out.shape == expected.shape == labels.shape
    _close(out, expected, rtol=1e-10, atol=1e-12)
    for reduction in ("mean", "sum"):  # unchanged
        want = F.cross_entropy(
            x,
            labels,
            reduction=reduction,
            weight=None if w is None else torch.tensor(w, dtype=torch.float64),
            ignore_index=params.get("ignore_index", -100),
            label_smoothing=params.get("label_smoothing", 0.0),
        )
        got = _run(
            lt.SparseCategoricalCELoss(from_logits=True, reduction=reduction, **params), x, labels, kernels
        )
        _close(got, want, rtol=1e-10, atol=1e-12)


@KERNELS
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_categorical_ce_and_kl_none_are_per_position_as_torch(shape, kernels):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64)
    target = torch.softmax(torch.randn(shape, dtype=torch.float64), 1)
    out = _run(lt.CategoricalCELoss(from_logits=True, reduction="none"), x, target, kernels)
    expected = F.cross_entropy(x, target, reduction="none")
    assert out.shape == expected.shape == (shape[0], *shape[2:])
    _close(out, expected, rtol=1e-10, atol=1e-12)
    kl = _run(lt.KLDivLoss(from_logits=True, reduction="none"), x, target, kernels)
    expected = F.kl_div(F.log_softmax(x, 1), target, reduction="none").sum(1)
    assert kl.shape == expected.shape
    _close(kl, expected, rtol=1e-10, atol=1e-12)


def test_numpy_none_is_per_position_class_axis_last():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 5, 3))
    labels = rng.integers(0, 3, (2, 4, 5))
    log_p = x - np.log(np.exp(x).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    out = lnp.sparse_categorical_ce(x, labels, from_logits=True, reduction="none")
    assert out.shape == (2, 4, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    out = lnp.categorical_ce(x, np.eye(3)[labels], from_logits=True, reduction="none")
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_dice_none_stays_per_sample():
    p = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (3, 2, 4, 4)).to(torch.float64)
    out = lt.DiceLoss(reduction="none")(p, y)
    inter, den = (p * y).sum((1, 2, 3)), (p * p).sum((1, 2, 3)) + (y * y).sum((1, 2, 3))
    _close(out, 1 - (2 * inter + 1e-5) / (den + 1e-5), rtol=1e-12, atol=1e-12)


# --- 3. every input form: integer, bool and float targets of any width --------------------------


@KERNELS
@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float16, torch.float64], ids=str
)
def test_one_hot_targets_of_any_dtype(dtype, kernels):
    torch.manual_seed(3)
    x = torch.randn(32, 5, 6)
    labels = torch.randint(0, 5, (32, 6))
    one_hot = F.one_hot(labels, 5).movedim(-1, 1).to(dtype)  # int64 as F.one_hot gives it
    expected = F.cross_entropy(x, labels)
    _close(_run(lt.CategoricalCELoss(from_logits=True), x, one_hot, kernels), expected)
    w = torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0])
    _close(
        _run(lt.CategoricalCELoss(from_logits=True, class_weights=w.tolist()), x, one_hot, kernels),
        F.cross_entropy(x, labels, weight=w),
    )
    _close(
        _run(lt.KLDivLoss(from_logits=True), x, one_hot, kernels),
        F.kl_div(F.log_softmax(x, 1), one_hot.float(), reduction="sum") / (32 * 6),
    )
    _close(
        _run(lt.BCELoss(from_logits=True), x, one_hot, kernels),
        F.binary_cross_entropy_with_logits(x, one_hot.float()),
    )
    _close(_run(lt.HuberLoss(delta=0.5), x, one_hot, kernels), F.huber_loss(x, one_hot.float(), delta=0.5))
    _close(_run(lt.MSELoss(), x, one_hot, kernels), F.mse_loss(x, one_hot.float()))


@KERNELS
def test_large_int_one_hot_with_class_weights(kernels):
    torch.manual_seed(4)
    x = torch.randn(16, 4, 32, 32)
    labels = torch.randint(0, 4, (16, 32, 32))
    w = [1.0, 2.0, 0.5, 4.0]
    out = _run(
        lt.CategoricalCELoss(from_logits=True, class_weights=w),
        x,
        F.one_hot(labels, 4).movedim(-1, 1),
        kernels,
    )
    _close(out, F.cross_entropy(x, labels, weight=torch.tensor(w)))


@KERNELS
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64], ids=str)
def test_integer_targets_of_huber_give_a_float_gradient(dtype, kernels):
    x = torch.tensor([[0.5, 3.0], [-1.0, 0.2]])
    y = torch.tensor([[0, 1], [2, 0]]).to(dtype)
    out = _run(lt.HuberLoss(), x, y, kernels)
    _close(out, F.huber_loss(x, y.float()))


@KERNELS
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.float32], ids=str)
def test_label_dtypes_of_sparse_ce_and_dice(dtype, kernels):
    torch.manual_seed(5)
    x = torch.randn(4, 3, 5, 5)
    labels = torch.randint(0, 3, (4, 5, 5))
    _close(
        _run(lt.SparseCategoricalCELoss(from_logits=True), x, labels.to(dtype), kernels),
        F.cross_entropy(x, labels),
    )
    p, y = x.softmax(1).double(), F.one_hot(labels, 3).movedim(-1, 1).double()
    inter, den = (p * y).sum((1, 2, 3)), (p * p).sum((1, 2, 3)) + (y * y).sum((1, 2, 3))
    expected = (1 - (2 * inter + 1e-5) / (den + 1e-5)).mean()
    _close(_run(lt.DiceLoss(from_logits=True), x, labels.to(dtype), kernels), expected)


# --- 3. empty batches ---------------------------------------------------------------------------

EMPTY = {  # name -> (module params, y_pred (N=0), y_true, torch.nn's loss on the same inputs)
    "mse": ({}, (0, 3), lambda x, y: F.mse_loss(x, y, reduction="none")),
    "mae": ({}, (0, 3), lambda x, y: F.l1_loss(x, y, reduction="none")),
    "huber": ({}, (0, 3), lambda x, y: F.huber_loss(x, y, reduction="none")),
    "bce": (
        {"from_logits": True},
        (0, 3),
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
    ),
    "weighted_bce": (
        {"from_logits": True},
        (0, 3),
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
    ),
    "categorical_ce": (
        {"from_logits": True},
        (0, 3, 4),
        lambda x, y: F.cross_entropy(x, y, reduction="none"),
    ),
    "sparse_categorical_ce": (
        {"from_logits": True},
        (0, 3, 4),
        lambda x, y: F.cross_entropy(x, y, reduction="none"),
    ),
    "kl_div": (
        {"from_logits": True},
        (0, 3, 4),
        lambda x, y: F.kl_div(F.log_softmax(x, 1), y, reduction="none").sum(1),
    ),
    "dice": ({"from_logits": True}, (0, 3, 4, 4), None),
    "dice-labels": ({"from_logits": True}, (0, 3, 4, 4), None),
    "dice-labels-per_class": ({"from_logits": True, "per_class": True}, (0, 3, 4, 4), None),
}


@KERNELS
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(EMPTY))
def test_empty_batch(case, reduction, kernels):
    name = case.split("-")[0]
    params, shape, native = EMPTY[case]
    x = torch.randn(shape)
    if name == "sparse_categorical_ce" or case.startswith("dice-labels"):
        y = torch.zeros((0, *shape[2:]), dtype=torch.long)
    else:
        y = torch.zeros(shape)
    module = getattr(lt, lossplug._spec.spec(name).class_name)(reduction=reduction, **params)
    out = _run(module, x, y, kernels)
    if reduction == "none":
        expected_shape = (
            (0,)
            if name == "dice"
            else tuple(native(x, y.float() if name != "sparse_categorical_ce" else y).shape)
        )
        assert tuple(out.shape) == expected_shape
    elif reduction == "sum":
        assert out.item() == 0.0
    else:  # the mean of no values is NaN, as torch.nn's
        assert math.isnan(out.item())
        if native is not None:
            ref = {
                "kl_div": lambda: F.kl_div(F.log_softmax(x, 1), y, reduction="batchmean"),
            }.get(name, lambda: native(x, y).mean())()
            assert math.isnan(ref.item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_numpy_empty_batch(reduction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = lnp.dice(np.zeros((0, 4, 4, 3)), np.zeros((0, 4, 4), dtype=np.int64), reduction=reduction)
        ce = lnp.sparse_categorical_ce(
            np.zeros((0, 3)), np.zeros((0,), dtype=np.int64), from_logits=True, reduction=reduction
        )
    if reduction == "none":
        assert out.shape == (0,) and ce.shape == (0,)
    elif reduction == "sum":
        assert out == 0.0 and ce == 0.0
    else:
        assert np.isnan(out) and np.isnan(ce)


# --- 3. half precision --------------------------------------------------------------------------


@KERNELS
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_inputs_compute_in_float32(dtype, kernels):
    torch.manual_seed(6)
    x = torch.randn(8, 4, 3).to(dtype)
    labels = torch.randint(0, 4, (8, 3))
    _close(
        _run(lt.SparseCategoricalCELoss(from_logits=True), x, labels, kernels),
        F.cross_entropy(x.float(), labels),
    )
    y = torch.rand(8, 4, 3).round().to(dtype)
    _close(
        _run(lt.BCELoss(from_logits=True), x, y, kernels),
        F.binary_cross_entropy_with_logits(x.float(), y.float()),
    )


# --- 4. hyperparameters assigned after construction ---------------------------------------------

BAD_ASSIGNMENTS = [
    ("WeightedBCELoss", "pos_weight", -2),
    ("WeightedBCELoss", "neg_weight", -0.1),
    ("DiceLoss", "smooth", -1),
    ("BCELoss", "eps", 0.7),
    ("HuberLoss", "delta", 0),
    ("BCELoss", "label_smoothing", 1.5),
    ("MSELoss", "reduction", "avg"),
    ("SparseCategoricalCELoss", "ignore_index", 1.5),
    ("BCELoss", "from_logits", "yes"),
    ("CategoricalCELoss", "class_weights", [-1.0, 1.0]),
]


@pytest.mark.parametrize("cls, name, value", BAD_ASSIGNMENTS)
def test_assigned_hyperparameter_is_checked_as_at_construction(cls, name, value):
    with pytest.raises(LossParameterError) as at_construction:
        getattr(lt, cls)(**{name: value})
    loss = getattr(lt, cls)()
    with pytest.raises(LossParameterError) as assigned:
        setattr(loss, name, value)
    assert str(assigned.value) == str(at_construction.value)
    assert isinstance(assigned.value, ValueError)


def test_assigned_hyperparameters_that_are_fine_take_effect():
    loss = lt.HuberLoss()
    loss.delta = 2  # an int becomes the float the constructor would make of it
    assert loss.delta == 2.0 and isinstance(loss.delta, float)
    x, y = torch.tensor([0.5, 3.0]), torch.zeros(2)
    _close(loss(x, y), F.huber_loss(x, y, delta=2.0))
    ce = lt.SparseCategoricalCELoss(from_logits=True)
    x, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    ce(x, labels)
    ce.class_weights = [1.0, 2.0, 3.0]
    assert isinstance(ce.class_weights, torch.Tensor) and "class_weights" in dict(ce.named_buffers())
    _close(ce(x, labels), F.cross_entropy(x, labels, weight=torch.tensor([1.0, 2.0, 3.0])))


def test_assigned_parameter_combinations_are_checked():
    dice = lt.DiceLoss(per_class=True, class_weights=[1.0, 2.0])
    with pytest.raises(LossParameterError, match="class_weights needs per_class=True"):
        dice.per_class = False
    kl = lt.KLDivLoss(log_input=True)
    with pytest.raises(LossParameterError, match="exclude each other"):
        kl.from_logits = True


def test_class_weights_follow_the_module_dtype():
    w = [0.1, 0.7, 0.3]
    loss = lt.SparseCategoricalCELoss(from_logits=True, class_weights=w).double()
    assert loss.class_weights.dtype == torch.float64
    assert loss.class_weights.tolist() == w  # exact, not float32 values widened
    x, labels = torch.randn(7, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0, 1])
    _close(
        loss(x, labels),
        F.cross_entropy(x, labels, weight=torch.tensor(w, dtype=torch.float64)),
        rtol=1e-13,
        atol=0,
    )
    assert lt.SparseCategoricalCELoss(class_weights=w).class_weights.dtype == torch.get_default_dtype()


# --- 5. NaN and inf in logits propagate ---------------------------------------------------------


@KERNELS
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_logits_are_never_a_finite_loss_where_torch_is_not(bad, kernels):
    torch.manual_seed(7)
    x = torch.randn(64, 4, 8)
    x[3, 0, 2] = bad
    labels = torch.randint(0, 4, (64, 8))
    labels[3, 2] = 0  # the position with the bad logit looks at it
    one_hot = F.one_hot(labels, 4).movedim(-1, 1).float()
    pairs = [
        (lt.SparseCategoricalCELoss(from_logits=True), labels, F.cross_entropy(x, labels)),
        (lt.CategoricalCELoss(from_logits=True), one_hot, F.cross_entropy(x, one_hot)),
        (lt.BCELoss(from_logits=True), one_hot, F.binary_cross_entropy_with_logits(x, one_hot)),
        (
            lt.WeightedBCELoss(from_logits=True, pos_weight=2.0),
            one_hot,
            F.binary_cross_entropy_with_logits(x, one_hot, pos_weight=torch.tensor(2.0)),
        ),
        (
            lt.KLDivLoss(from_logits=True),
            one_hot,
            F.kl_div(F.log_softmax(x, 1), one_hot, reduction="batchmean"),
        ),
    ]
    for module, y, native in pairs:
        out = _run(module, x, y, kernels, grad=False)
        if math.isfinite(native.item()):
            _close(out, native)
        else:
            assert not math.isfinite(out.item()), type(module).__name__


def test_nan_in_probabilities_and_targets_raise():
    with pytest.raises(ValueError, match="y_pred"):
        lt.BCELoss()(torch.tensor([0.5, float("nan")]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="y_true"):
        lt.BCELoss(from_logits=True)(torch.tensor([0.5, 1.0]), torch.tensor([1.0, float("nan")]))


# --- 6. errors name the shapes; probability errors on logits suggest from_logits -----------------


def test_dice_label_error_names_the_shapes():
    with pytest.raises(ValueError) as info:
        lt.DiceLoss()(torch.rand(4, 1), torch.rand(4))
    assert "(4, 1)" in str(info.value) and "(4,)" in str(info.value)
    assert "labels in y_true must be integers" in str(info.value)


@pytest.mark.parametrize("name", ["bce", "sparse_categorical_ce", "dice", "kl_div"])
def test_probability_error_on_logits_suggests_from_logits(name):
    logits = np.array([[2.5, -1.0, 0.3], [-3.0, 0.2, 1.7]])
    y_true = {"sparse_categorical_ce": np.array([0, 2]), "kl_div": np.full((2, 3), 1 / 3)}.get(
        name, np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    )
    with pytest.raises(ValueError, match="pass from_logits=True"):
        getattr(lnp, name)(logits, y_true)
    with pytest.raises(ValueError, match=r"\[0, 1\]") as info:
        getattr(lnp, name)(np.array([[0.5, float("nan"), 0.2], [0.1, 0.2, 0.7]]), y_true)
    assert "pass from_logits" not in str(info.value)  # NaN is not a logit: no hint


# --- 2. inside torch.compile: out-of-range input gives NaN ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", ["label", "nonint", "probs", "targets", "dice-label", "fine"])
def test_torch_compile_poisons_out_of_range_input(case):
    torch.manual_seed(8)
    x, labels = torch.randn(6, 4), torch.randint(0, 4, (6,))
    module, y = lt.SparseCategoricalCELoss(from_logits=True), labels.clone()
    if case == "label":
        y[2] = 7
    elif case == "nonint":
        y = labels.double() + 0.5
    elif case == "probs":
        module = lt.SparseCategoricalCELoss()
        x = x.softmax(1) * 2
    elif case == "targets":
        module, y = lt.BCELoss(from_logits=True), torch.rand(6, 4) * 3
    elif case == "dice-label":
        module, x, y = lt.DiceLoss(from_logits=True), torch.randn(2, 4, 3, 3), torch.full((2, 3, 3), 7)
    out = torch.compile(module, fullgraph=True)(x, y)
    if case == "fine":
        _close(out, F.cross_entropy(x, labels))
    else:
        assert math.isnan(out.item())


@pytest.mark.slow
def test_torch_compile_of_a_fresh_process_first_call():
    # nothing traced or cached before: the first call of a fresh loss happens inside the graph
    import subprocess
    import sys

    code = (
        "import math, torch, lossplug.torch as lt\n"
        "out = torch.compile(lt.JaccardLoss(from_logits=True), fullgraph=True)"
        "(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 7))\n"
        "assert math.isnan(out.item()), out\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
