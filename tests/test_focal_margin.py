"""focal, categorical_focal, log_cosh, poisson, cosine_similarity, hinge: values from outside lossplug.

torchvision's ``sigmoid_focal_loss`` formula written out in torch ops (torchvision does not import
beside the CPU torch here), MONAI's ``FocalLoss``, torch's own ops, numbers worked by hand, and
the properties the formulas promise (gamma = 0, alpha = None is exactly BCE / cross-entropy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossplug.numpy as ln
import lossplug.torch as lt

RNG = np.random.default_rng(12)


def t64(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss (reduction "none"), its formula as published."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1, 2.0), (0.6, 0.5), (0.25, 3.0)])
def test_focal_is_torchvisions_sigmoid_focal_loss(alpha, gamma):
    x = t64(RNG.normal(size=(4, 3, 5)) * 3)
    y = t64((RNG.uniform(size=(4, 3, 5)) < 0.4).astype(float))
    expected = torchvision_sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
    params = {"alpha": None if alpha < 0 else alpha, "gamma": gamma, "from_logits": True}
    tol = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(lt.FocalLoss(**params, reduction="none")(x, y), expected, **tol)
    torch.testing.assert_close(lt.FocalLoss(**params)(x, y), expected.mean(), **tol)
    np.testing.assert_allclose(ln.focal(x.numpy(), y.numpy(), **params, reduction="sum"),
                               expected.sum().item(), rtol=1e-10)
    # float32 module against the float64 formula
    got32 = lt.FocalLoss(**params)(x.float(), y.float())
    assert got32.item() == pytest.approx(expected.mean().item(), rel=2e-5)


def test_focal_on_probabilities_is_the_same_formula():
    p = RNG.uniform(0.02, 0.98, size=(6, 4))
    y = (RNG.uniform(size=(6, 4)) < 0.5).astype(float)
    x = np.log(p) - np.log1p(-p)
    expected = torchvision_sigmoid_focal_loss(t64(x), t64(y), alpha=0.25).mean().item()
    assert ln.focal(p, y, alpha=0.25) == pytest.approx(expected, rel=1e-10)
    assert lt.FocalLoss(alpha=0.25)(t64(p), t64(y)).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_monai_sigmoid_focal_loss(alpha):
    from monai.losses import FocalLoss as MonaiFocal

    x = t64(RNG.normal(size=(2, 3, 4, 4)) * 2)
    y = t64((RNG.uniform(size=(2, 3, 4, 4)) < 0.3).astype(float))
    expected = MonaiFocal(gamma=2.0, alpha=alpha, reduction="mean")(x, y)
    got = lt.FocalLoss(gamma=2.0, alpha=alpha, from_logits=True)(x, y)
    torch.testing.assert_close(got, expected.double(), rtol=1e-6, atol=1e-9)  # MONAI: float32


def test_categorical_focal_matches_monai_softmax_focal_loss():
    # MONAI's use_softmax=True averages over the class channel too (ours sums it), and its scalar
    # alpha means the class weights [1 - alpha, alpha, alpha, ...]
    from monai.losses import FocalLoss as MonaiFocal

    c, a = 4, 0.3
    x = t64(RNG.normal(size=(2, c, 3, 3)) * 2)
    labels = RNG.integers(0, c, size=(2, 3, 3))
    y = t64(np.moveaxis(np.eye(c)[labels], -1, 1))
    expected = MonaiFocal(gamma=2.0, alpha=a, use_softmax=True, reduction="mean")(x, y)
    weights = [1 - a] + [a] * (c - 1)
    loss = lt.CategoricalFocalLoss(gamma=2.0, alpha=weights, from_logits=True)
    expected = c * expected.double()  # MONAI computes in float32
    torch.testing.assert_close(loss(x, y), expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(loss(x, torch.tensor(labels)), expected, rtol=1e-6, atol=1e-9)


def test_categorical_focal_is_the_formula_written_in_torch_ops():
    x = t64(RNG.normal(size=(5, 4)) * 2)
    labels = torch.tensor(RNG.integers(0, 4, size=5))
    alpha = t64([0.25, 1.0, 0.5, 2.0])
    log_p = torch.log_softmax(x, 1)
    terms = -alpha * (1 - log_p.exp()) ** 2 * F.one_hot(labels, 4) * log_p
    expected = terms.sum(1)
    loss = lt.CategoricalFocalLoss(alpha=alpha.tolist(), from_logits=True, reduction="none")
    torch.testing.assert_close(loss(x, labels), expected, rtol=1e-10, atol=1e-12)


# --- numbers worked by hand ----------------------------------------------------------------------

HAND = [
    # p = 0.9, y = 1, gamma = 2: 0.1^2 * -log 0.9
    ("focal", [[0.9]], [[1.0]], {}, 0.01 * -math.log(0.9)),
    ("focal", [[0.9]], [[1.0]], {"alpha": 0.25}, 0.25 * 0.01 * -math.log(0.9)),
    # y = 0 weighs by 1 - alpha; p = 0.2: 0.2^2 * -log 0.8 * 0.75
    ("focal", [[0.2]], [[0.0]], {"alpha": 0.25}, 0.75 * 0.04 * -math.log(0.8)),
    # p = (0.7, 0.2, 0.1), class 0: 0.3^2 * -log 0.7
    ("categorical_focal", [[0.7, 0.2, 0.1]], [[1.0, 0.0, 0.0]], {}, 0.09 * -math.log(0.7)),
    ("categorical_focal", [[0.7, 0.2, 0.1]], [1], {"alpha": [1.0, 0.5, 1.0]}, 0.5 * 0.64 * -math.log(0.2)),
    ("log_cosh", [[1.0, -2.0]], [[0.0, 0.0]], {}, (math.log(math.cosh(1.0)) + math.log(math.cosh(2.0))) / 2),
    ("log_cosh", [[1000.0]], [[0.0]], {}, 1000.0 - math.log(2.0)),
    ("poisson", [[2.0]], [[3.0]], {}, 2.0 - 3.0 * math.log(2.0 + 1e-7)),
    ("poisson", [[math.log(2.0)]], [[3.0]], {"log_input": True}, 2.0 - 3.0 * math.log(2.0)),
    ("cosine_similarity", [[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, -1.0]], {},
     ((1 - 1 / math.sqrt(2)) + 2.0) / 2),
    ("hinge", [[0.3, 0.3, -2.0]], [[1.0, 0.0, 1.0]], {}, (0.7 + 1.3 + 3.0) / 3),
    ("hinge", [[0.3, 0.3, 2.0]], [[1.0, -1.0, 1.0]], {"squared": True}, (0.49 + 1.69 + 0.0) / 3),
]


@pytest.mark.parametrize("name, y_pred, y_true, params, expected", HAND,
                         ids=[f"{h[0]}-{i}" for i, h in enumerate(HAND)])
@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_hand_worked_values(framework, name, y_pred, y_true, params, expected):
    import lossplug

    loss = lossplug.get(name, framework=framework, **params)
    y_true = np.asarray(y_true)
    if framework == "torch":
        y_true = torch.tensor(y_true) if y_true.dtype.kind in "iu" else t64(y_true)
        value = loss(t64(y_pred), y_true).item()
    else:
        value = float(loss(np.asarray(y_pred), y_true))
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_gamma0_alpha_none_is_exactly_bce(from_logits, smoothing):
    x = RNG.normal(size=(5, 3)) * 3
    y_pred = x if from_logits else 1 / (1 + np.exp(-x))
    y = RNG.uniform(size=(5, 3))
    kw = {"from_logits": from_logits, "label_smoothing": smoothing, "reduction": "none"}
    np.testing.assert_array_equal(ln.focal(y_pred, y, gamma=0.0, **kw), ln.bce(y_pred, y, **kw))
    torch.testing.assert_close(lt.FocalLoss(gamma=0.0, **kw)(t64(y_pred), t64(y)),
                               lt.BCELoss(**kw)(t64(y_pred), t64(y)), rtol=0, atol=0)
    np.testing.assert_allclose(ln.focal(y_pred, y, gamma=1e-9, **kw), ln.bce(y_pred, y, **kw), rtol=1e-7)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_focal_gamma0_is_exactly_the_cross_entropy(from_logits):
    x = RNG.normal(size=(6, 4)) * 2
    y_pred = x if from_logits else np.exp(x) / np.exp(x).sum(1, keepdims=True)
    labels = RNG.integers(0, 4, size=6)
    soft = RNG.dirichlet(np.ones(4), size=6)
    kw = {"from_logits": from_logits, "reduction": "none"}
    np.testing.assert_array_equal(ln.categorical_focal(y_pred, soft, gamma=0.0, **kw),
                                  ln.categorical_ce(y_pred, soft, **kw))
    np.testing.assert_array_equal(ln.categorical_focal(y_pred, labels, gamma=0.0, **kw),
                                  ln.sparse_categorical_ce(y_pred, labels, **kw))
    # and the focal terms at gamma -> 0 tend to it (the general path, not the shortcut)
    np.testing.assert_allclose(ln.categorical_focal(y_pred, labels, gamma=1e-9, **kw),
                               ln.sparse_categorical_ce(y_pred, labels, **kw), rtol=1e-7)
    torch.testing.assert_close(lt.CategoricalFocalLoss(gamma=0.0, **kw)(t64(y_pred), t64(soft)),
                               lt.CategoricalCELoss(**kw)(t64(y_pred), t64(soft)), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name, kind", [("focal", "binary"), ("categorical_focal", "onehot"),
                                        ("categorical_focal", "labels"), ("log_cosh", "regression"),
                                        ("cosine_similarity", "vectors"), ("hinge", "scores"),
                                        ("hinge", "scores_pm1")])
@pytest.mark.parametrize("seed", range(5))
def test_non_negative(name, kind, seed):
    from lossplug.tools import inputs

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 6)), int(rng.integers(2, 5)), int(rng.integers(1, 4)))
    y_pred, y_true = inputs.make(kind, {}, shape, rng, axis=1)
    if kind in ("regression", "vectors", "scores", "scores_pm1"):
        y_pred = 5 * y_pred  # any scale
    axis = {"axis": 1} if name in ("categorical_focal", "cosine_similarity") else {}
    values = getattr(ln, name)(y_pred, y_true, reduction="none", **axis)
    assert np.all(values >= -1e-12)


def test_perfect_predictions_cost_zero():
    v = RNG.normal(size=(4, 3))
    assert ln.log_cosh(v, v) == 0.0
    assert abs(ln.cosine_similarity(v, 2.5 * v)) < 1e-12
    assert ln.hinge(np.array([2.0, -1.5]), np.array([1.0, 0.0])) == 0.0
    assert ln.focal(np.array([1.0, 0.0]), np.array([1.0, 0.0])) < 1e-12


# --- extremes: logits of +-1e3, bf16 autocast ----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_of_1e3_give_finite_losses_and_gradients(dtype):
    x = torch.tensor([[1e3, -1e3], [-1e3, 1e3]], dtype=dtype, requires_grad=True)
    for loss, y in [(lt.FocalLoss(from_logits=True, alpha=0.25), torch.tensor([[0.0, 1.0], [1.0, 1.0]])),
                    (lt.FocalLoss(from_logits=True, gamma=0.5), torch.tensor([[1.0, 0.0], [1.0, 1.0]])),
                    (lt.CategoricalFocalLoss(from_logits=True), torch.tensor([1, 0])),
                    (lt.CategoricalFocalLoss(from_logits=True, gamma=0.5), torch.tensor([0, 1]))]:
        value = loss(x, y.to(dtype) if y.is_floating_point() else y)
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(value) and torch.all(torch.isfinite(grad)), loss
    # a wrong logit of 1e3 costs about 1e3: the log-space path does not saturate
    one = torch.ones(1, dtype=dtype)
    wrong = lt.FocalLoss(from_logits=True, gamma=2.0)(1e3 * one, 0 * one)
    assert wrong.item() == pytest.approx(1e3, rel=1e-6)
    big = torch.tensor([[1e3, -1e3]], dtype=dtype, requires_grad=True)
    for loss, y in [(lt.LogCoshLoss(), torch.zeros(1, 2)), (lt.PoissonLoss(log_input=True), torch.ones(1, 2)),
                    (lt.CosineSimilarityLoss(), torch.zeros(1, 2)),
                    (lt.HingeLoss(squared=True), torch.ones(1, 2))]:
        if isinstance(loss, lt.PoissonLoss):
            inp = torch.tensor([[30.0, -1e3]], dtype=dtype, requires_grad=True)
        else:
            inp = big
        value = loss(inp, y.to(dtype))
        (grad,) = torch.autograd.grad(value, inp)
        assert torch.isfinite(value) and torch.all(torch.isfinite(grad)), loss


def test_zero_vectors_give_a_finite_cosine_loss_and_gradient():
    x = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    value = lt.CosineSimilarityLoss()(x, t64([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    (grad,) = torch.autograd.grad(value, x)
    assert value.item() == 1.0 and torch.all(torch.isfinite(grad))


@pytest.mark.parametrize("name", ["focal", "categorical_focal", "log_cosh", "poisson", "cosine_similarity",
                                  "hinge"])
def test_bf16_autocast_is_finite_and_float32(name):
    from loss_cases import CASES, to_torch, torch_loss

    case = next(c for c in CASES if c.name == name)
    y_pred, y_true = to_torch(case.inputs(1), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch_loss(case)(y_pred.bfloat16(), y_true)
    assert out.dtype == torch.float32 and torch.isfinite(out)


# --- errors --------------------------------------------------------------------------------------


def test_named_errors():
    from lossplug import LossParameterError

    with pytest.raises(LossParameterError, match="gamma=-1"):
        lt.FocalLoss(gamma=-1)
    with pytest.raises(LossParameterError, match="alpha=1.5"):
        lt.FocalLoss(alpha=1.5)
    with pytest.raises(LossParameterError, match="alpha"):
        lt.CategoricalFocalLoss(alpha=[-1.0, 1.0])
    with pytest.raises(LossParameterError, match="eps"):
        lt.CosineSimilarityLoss(eps=0.0)
    with pytest.raises(ValueError, match="alpha has 2 entries but y_pred has 3 classes"):
        lt.CategoricalFocalLoss(alpha=[1.0, 2.0])(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="label 3 is out of range"):
        lt.CategoricalFocalLoss(from_logits=True)(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="probabilities"):
        lt.FocalLoss()(torch.tensor([1.5]), torch.tensor([1.0]))
    for cls in (lt.LogCoshLoss, lt.PoissonLoss, lt.HingeLoss, lt.CosineSimilarityLoss):
        with pytest.raises(ValueError, match="never broadcasts"):
            cls()(torch.zeros(4, 3), torch.zeros(4, 1))


# --- value checks of poisson, hinge and cosine_similarity ----------------------------------------

_NAN, _INF = float("nan"), float("inf")
BAD_VALUES = [
    # (loss, params, y_pred, y_true, what the message must say)
    ("poisson", {}, [[1.0, 2.0]], [[1.0, -2.0]],
     r"y_true \(counts\) must lie in \[0, inf\); found values from -2 to 1"),
    ("poisson", {"log_input": True}, [[0.5, -3.0]], [[-1.0, 2.0]],
     r"y_true \(counts\) must lie in \[0, inf\)"),
    ("poisson", {}, [[1.0, _NAN]], [[1.0, 2.0]],
     r"y_pred \(rates, log_input=False\).*found values from nan"),
    ("poisson", {}, [[1.0, 2.0]], [[_NAN, 2.0]], r"y_true \(counts\)"),
    ("poisson", {}, [[0.5, -0.1]], [[1.0, 2.0]],
     r"y_pred \(rates, log_input=False\) must lie in \[0, inf\); found values from -0.1 to 0.5; "
     r".*log_input=True"),
    ("hinge", {}, [[0.5, 1.0]], [[0.0, 2.0]],
     r"all in \{0, 1\} or all in \{-1, 1\}; found values from 0 to 2"),
    ("hinge", {}, [[0.5, 1.0]], [[-2.0, 1.0]], r"found values from -2 to 1"),
    ("hinge", {}, [[0.5, 1.0, 0.0]], [[-1.0, 0.0, 1.0]], r"found -1 and 0 together"),
    ("hinge", {"squared": True}, [[0.5, 1.0]], [[-1.0, 0.0]], r"found -1 and 0 together"),
    ("hinge", {}, [[0.5, 1.0]], [[0.5, 1.0]], r"found values from 0.5 to 1, not all integers"),
    ("hinge", {}, [[0.5, 1.0]], [[_NAN, 1.0]], r"all in \{0, 1\} or all in \{-1, 1\}"),
    ("cosine_similarity", {}, [[1.0, _INF]], [[1.0, 0.0]],
     r"y_pred must be finite.*found values from 1 to inf"),
    ("cosine_similarity", {}, [[1.0, 2.0]], [[-_INF, 0.0]], r"y_true must be finite"),
    ("cosine_similarity", {}, [[_NAN, 2.0]], [[1.0, 0.0]], r"y_pred must be finite"),
]
GOOD_VALUES = [
    ("poisson", {}, [[0.0, 2.5]], [[0.0, 3.0]]),  # a zero rate and zero counts are counts
    ("poisson", {}, [[1.0, 2.5]], [[0.5, 3.0]]),  # non-integer counts (torch's and Keras's too)
    ("poisson", {"log_input": True}, [[-4.0, 2.5]], [[0.0, 3.0]]),  # a log-rate of any sign
    ("hinge", {}, [[0.5, -1.0]], [[1.0, 1.0]]),
    ("hinge", {}, [[0.5, -1.0]], [[-1.0, -1.0]]),
    ("hinge", {}, [[0.5, -1.0]], [[0.0, 0.0]]),
    ("hinge", {"squared": True}, [[0.5, -1.0]], [[-1.0, 1.0]]),
    ("cosine_similarity", {}, [[0.0, 0.0]], [[0.0, 0.0]]),  # zero vectors: eps floors the norms
]


def _loss_module(name, params):
    import lossplug

    return lossplug.get(name, framework="torch", **params)


@pytest.mark.parametrize("name, params, y_pred, y_true, message", BAD_VALUES,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)])
def test_bad_values_are_named_errors(name, params, y_pred, y_true, message):
    with pytest.raises(ValueError, match=message):
        _loss_module(name, params)(t64(y_pred), t64(y_true))
    with pytest.raises(ValueError, match=message):
        getattr(ln, name)(np.asarray(y_pred), np.asarray(y_true), **params)


def test_hinge_labels_of_every_dtype():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    for dtype in (torch.int64, torch.int32, torch.uint8, torch.bool, torch.float32):
        ok = torch.tensor([[1, 0, 1]]).to(dtype)
        assert lt.HingeLoss()(x, ok).item() == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    with pytest.raises(ValueError, match="found -1 and 0 together"):
        lt.HingeLoss()(x, torch.tensor([[1, 0, -1]]))
    with pytest.raises(ValueError, match="from 0 to 3"):
        lt.HingeLoss()(x, torch.tensor([[1, 0, 3]], dtype=torch.uint8))


@pytest.mark.parametrize("name, params, y_pred, y_true", GOOD_VALUES,
                         ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD_VALUES)])
def test_good_edge_values_pass_the_checks(name, params, y_pred, y_true):
    value = _loss_module(name, params)(t64(y_pred), t64(y_true))
    assert torch.isfinite(value)
    assert float(getattr(ln, name)(np.asarray(y_pred), np.asarray(y_true), **params)) == pytest.approx(
        value.item(), rel=1e-12, abs=1e-12)


@pytest.fixture
def derived_everywhere(monkeypatch):
    from lossplug.frameworks import compiled, derived

    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 1)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


@pytest.mark.parametrize("name, params, y_pred, y_true, message", BAD_VALUES,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)])
def test_bad_values_raise_from_the_derived_kernels_ranges(name, params, y_pred, y_true, message,
                                                          derived_everywhere):
    module = _loss_module(name, params)
    x = t64(y_pred).requires_grad_()
    with pytest.raises(ValueError, match=message):
        module(x, t64(y_true))
    # the same module on good values runs the kernel (the checks read its ranges)
    good = next(g for g in GOOD_VALUES if g[0] == name)
    xg = t64(good[2]).requires_grad_()
    out = _loss_module(name, good[1])(xg, t64(good[3]))
    assert type(out.grad_fn).__name__ == "DerivedLossBackward"
    with lt.fused_kernels(False):
        torch.testing.assert_close(out, _loss_module(name, good[1])(t64(good[2]), t64(good[3])))


@pytest.mark.parametrize("name, params, y_pred, y_true, message", BAD_VALUES,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)])
def test_bad_values_under_torch_compile_are_nan_never_a_finite_loss(name, params, y_pred, y_true, message):
    module = _loss_module(name, params)
    step = torch.compile(lambda x, y: module(x, y), backend="eager", fullgraph=True)
    out = step(t64(y_pred), t64(y_true))
    assert math.isnan(out.item()), (name, y_pred, y_true)
    good = next(g for g in GOOD_VALUES if g[0] == name and g[1] == params)
    fine = step(t64(good[2]), t64(good[3]))
    assert math.isfinite(fine.item())
    torch.testing.assert_close(fine, module(t64(good[2]), t64(good[3])))
