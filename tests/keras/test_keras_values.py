"""Keras values against hand-worked numbers, ``keras.losses`` built-ins and the NumPy reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import (
    CLASSES,
    DTYPES,
    NAMES,
    bulk_call,
    call,
    case_classes,
    case_ids,
    cases,
    float_context,
    is_elementwise,
    loss_params,
    make_inputs,
    reference,
    tolerance,
)

import lossplug
import lossplug.keras as lk
from lossplug._spec import REGISTRY

pytestmark = pytest.mark.keras

BCE_P, BCE_Y = [0.1, 0.9, 0.8, 0.3], [0.0, 1.0, 1.0, 0.0]
CCE_P = [[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]
CCE_LABELS = [1, 2, 0]


# --- classic hand-worked examples ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_classic_example(dtype):
    # -(log .9 + log .9 + log .8 + log .7) / 4
    value = call(lk.BCELoss(dtype=dtype), BCE_Y, BCE_P, dtype=dtype)
    np.testing.assert_allclose(value, 0.1976349, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_ce_classic_example(dtype):
    # -(log .1 + log .5 + log .1) / 3
    one_hot = np.eye(3)[CCE_LABELS]
    value = call(lk.CategoricalCELoss(dtype=dtype), one_hot, CCE_P, dtype=dtype)
    np.testing.assert_allclose(value, 1.7661058, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labels", [CCE_LABELS, [[1], [2], [0]]], ids=["(N,)", "(N,1)"])
def test_sparse_categorical_ce_classic_example(dtype, labels):
    value = call(lk.SparseCategoricalCELoss(dtype=dtype), np.array(labels), CCE_P, dtype=dtype)
    np.testing.assert_allclose(value, 1.7661058, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_classic_example(dtype):
    # 0.2 log(0.2/0.4) + 0.3 log 1 + 0.5 log(0.5/0.3)
    p, q = [[0.2, 0.3, 0.5]], [[0.4, 0.3, 0.3]]
    value = call(lk.KLDivLoss(dtype=dtype), p, q, dtype=dtype)
    np.testing.assert_allclose(value, 0.1167834, rtol=1e-6)
    log_q = call(lk.KLDivLoss(log_input=True, dtype=dtype), p, np.log(q), dtype=dtype)
    np.testing.assert_allclose(log_q, 0.1167834, rtol=1e-6)


def test_huber_and_dice_hand_worked():
    # errors 0.5 and 2 with delta 1: 0.5 * 0.25 = 0.125 and 1 * (2 - 0.5) = 1.5
    np.testing.assert_allclose(call(lk.HuberLoss(), [[0.0, 0.0]], [[0.5, -2.0]]), (0.125 + 1.5) / 2)
    # intersection .9, sum p^2 = .81 + .04, sum y^2 = 1: 1 - 1.8 / 1.85
    dice = call(lk.DiceLoss(smooth=0.0), [[1.0, 0.0]], [[0.9, 0.2]])
    np.testing.assert_allclose(dice, 1 - 1.8 / 1.85, rtol=1e-6)


# --- keras.losses built-ins where the conventions agree ----------------------------------------


def _rng(seed=0):
    return np.random.default_rng(seed)


def _builtin(loss, y_true, y_pred, sample_weight=None):
    return np.float64(keras.ops.convert_to_numpy(loss(y_true, y_pred, sample_weight=sample_weight)))


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: lk.MSELoss(), lambda: keras.losses.MeanSquaredError()),
        (lambda: lk.MAELoss(), lambda: keras.losses.MeanAbsoluteError()),
        (lambda: lk.HuberLoss(), lambda: keras.losses.Huber()),
        (lambda: lk.HuberLoss(delta=0.3), lambda: keras.losses.Huber(delta=0.3)),
    ],
    ids=["mse", "mae", "huber", "huber-0.3"],
)
def test_regression_matches_keras(ours, theirs, shape):
    y, p = _rng().normal(size=shape), _rng(1).normal(size=shape)
    np.testing.assert_allclose(call(ours(), y, p), _builtin(theirs(), y, p), rtol=1e-5)


def test_sum_is_over_every_element_unlike_keras():
    # Keras's "sum" adds the per-sample means over the last axis; lossplug's adds every element.
    y, p = _rng().normal(size=(6, 5)), _rng(1).normal(size=(6, 5))
    ours = call(lk.HuberLoss(delta=2.0, reduction="sum"), y, p)
    theirs = _builtin(keras.losses.Huber(delta=2.0, reduction="sum"), y, p)
    np.testing.assert_allclose(ours, 5 * theirs, rtol=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_bce_logits_matches_keras(label_smoothing):
    y = _rng().integers(0, 2, size=(5, 4)).astype("float32")
    x = _rng(1).normal(scale=4.0, size=(5, 4))
    ours = lk.BCELoss(from_logits=True, label_smoothing=label_smoothing)
    theirs = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    np.testing.assert_allclose(call(ours, y, x), _builtin(theirs, y, x), rtol=1e-5)


def test_bce_probabilities_match_keras_away_from_clip():
    y = _rng().uniform(size=(5, 4))
    p = _rng(1).uniform(0.01, 0.99, size=(5, 4))
    np.testing.assert_allclose(
        call(lk.BCELoss(), y, p), _builtin(keras.losses.BinaryCrossentropy(), y, p), rtol=1e-5
    )


def test_weighted_bce_with_equal_weights_scales_keras_bce():
    y = _rng().integers(0, 2, size=(5, 4)).astype("float32")
    x = _rng(1).normal(size=(5, 4))
    theirs = _builtin(keras.losses.BinaryCrossentropy(from_logits=True), y, x)
    ours = call(lk.WeightedBCELoss(pos_weight=2.5, neg_weight=2.5, from_logits=True), y, x)
    np.testing.assert_allclose(ours, 2.5 * theirs, rtol=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 3, 4)])
def test_categorical_ce_logits_matches_keras(label_smoothing, shape):
    labels = _rng().integers(0, shape[-1], size=shape[:-1])
    y, x = np.eye(shape[-1])[labels], _rng(1).normal(scale=3.0, size=shape)
    ours = lk.CategoricalCELoss(from_logits=True, label_smoothing=label_smoothing)
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    np.testing.assert_allclose(call(ours, y, x), _builtin(theirs, y, x), rtol=1e-5)
    # sparse with label smoothing is the categorical loss on smoothed one-hot targets (torch's rule)
    sparse = lk.SparseCategoricalCELoss(from_logits=True, label_smoothing=label_smoothing)
    np.testing.assert_allclose(call(sparse, labels, x), _builtin(theirs, y, x), rtol=1e-5)


def test_categorical_ce_probabilities_differ_from_keras_by_its_normalisation():
    # Keras divides y_pred by its sum over the class axis; lossplug takes probabilities as given.
    labels = np.array([0, 2, 1, 1])
    y = np.eye(3)[labels]
    p = _rng().uniform(0.05, 0.9, size=(4, 3))  # rows do not sum to 1
    theirs = _builtin(keras.losses.CategoricalCrossentropy(), y, p)
    ours = call(lk.CategoricalCELoss(), y, p)
    normalised = p / p.sum(-1, keepdims=True)
    np.testing.assert_allclose(call(lk.CategoricalCELoss(), y, normalised), theirs, rtol=1e-5)
    # -log(p_y / S) = -log p_y + log S, per sample
    np.testing.assert_allclose(theirs - ours, np.mean(np.log(p.sum(-1))), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 3, 4)])
def test_sparse_categorical_ce_matches_keras(from_logits, shape):
    labels = _rng().integers(0, shape[-1], size=shape[:-1])
    x = _rng(1).normal(scale=2.0, size=shape)
    p = x if from_logits else np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    ours = lk.SparseCategoricalCELoss(from_logits=from_logits)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    np.testing.assert_allclose(call(ours, labels, p), _builtin(theirs, labels, p), rtol=1e-5)


@pytest.mark.parametrize("ignore", [-1, 2])
@pytest.mark.parametrize("shape", [(8, 4), (2, 3, 3, 4)])
def test_sparse_categorical_ce_ignore_matches_keras_ignore_class(ignore, shape):
    labels = _rng().integers(0, shape[-1], size=shape[:-1])
    labels[..., 0] = ignore
    x = _rng(1).normal(scale=2.0, size=shape)
    ours = lk.SparseCategoricalCELoss(from_logits=True, ignore_index=ignore)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)
    np.testing.assert_allclose(call(ours, labels, x), _builtin(theirs, labels, x), rtol=1e-5)


def test_kl_matches_keras_inside_its_clipping():
    # Keras clips both p and q to [eps, 1]; with every p_c > eps only q's clipping acts, as ours.
    p = _rng().dirichlet(np.ones(4), size=5)
    q = _rng(1).dirichlet(np.ones(4), size=5)
    q[0, 1] = 0.0  # clipped to eps by both
    np.testing.assert_allclose(
        call(lk.KLDivLoss(), p, q), _builtin(keras.losses.KLDivergence(), p, q), rtol=1e-5
    )


def test_kl_differs_from_keras_where_p_is_zero():
    # Keras clips p = 0 to 1e-7 and adds 1e-7 log(1e-7 / q); lossplug takes the limit 0 log 0 = 0.
    p, q = np.array([[0.0, 0.5, 0.5]]), np.array([[0.2, 0.4, 0.4]])
    theirs = _builtin(keras.losses.KLDivergence(), p, q)
    ours = call(lk.KLDivLoss(), p, q)
    np.testing.assert_allclose(ours, np.log(0.5 / 0.4), rtol=1e-6)
    np.testing.assert_allclose(theirs - ours, 1e-7 * np.log(1e-7 / 0.2), atol=1e-7)  # float32 ulp


def test_dice_plain_denominator_matches_keras_dice():
    # keras.losses.Dice: 1 - 2I / (sum y + sum p + 1e-7); ours with squared=False and smooth=0 has
    # no 1e-7, a difference of about 2I * 1e-7 / D^2, far below float32 resolution here.
    y = _rng().integers(0, 2, size=(3, 4, 4, 2)).astype("float32")
    p = _rng(1).uniform(size=(3, 4, 4, 2))
    per_sample = keras.losses.Dice(axis=(1, 2, 3))
    ours = lk.DiceLoss(squared=False, smooth=0.0)
    np.testing.assert_allclose(call(ours, y, p), _builtin(per_sample, y, p), rtol=1e-5)
    batch = lk.DiceLoss(squared=False, smooth=0.0, aggregation="batch")
    np.testing.assert_allclose(call(batch, y, p), _builtin(keras.losses.Dice(), y, p), rtol=1e-5)
    # the default (squared denominator) is a different loss
    assert abs(call(lk.DiceLoss(), y, p) - _builtin(per_sample, y, p)) > 1e-2


# --- parity with the NumPy reference ------------------------------------------------------------


def _shape(name, case, spatial):
    if is_elementwise(name):
        return (2, 3, 5) if spatial else (4, 5)
    classes = case_classes(case)
    return (2, 3, 3, classes) if spatial else (5, classes)


@pytest.mark.parametrize(
    "spatial, dtype", [(False, "float32"), (True, "float32"), (False, "float64")],
    ids=["flat-float32", "spatial-float32", "flat-float64"],
)
@pytest.mark.parametrize("name, case", cases(), ids=case_ids())
def test_reductions_match_numpy(name, case, spatial, dtype):
    params = loss_params(case)
    shape = _shape(name, case, spatial)
    y_true, y_pred = make_inputs(name, case, shape, np.random.default_rng(7))
    losses = [CLASSES[name](**params, reduction=r, dtype=dtype) for r in ("mean", "sum", "none")]
    mean, total, none = bulk_call(losses, y_true, y_pred, dtype=dtype)
    for reduction, value in (("mean", mean), ("sum", total)):
        expected = reference(name, y_true, y_pred, **params, reduction=reduction)
        np.testing.assert_allclose(value, expected, **tolerance(dtype), err_msg=reduction)

    numpy_none = reference(name, y_true, y_pred, **params, reduction="none")
    if is_elementwise(name):
        # Keras's habit: the mean over the last axis, where NumPy's "none" is per element
        assert none.shape == shape[:-1] and numpy_none.shape == shape
        expected = numpy_none.mean(-1)
    elif params.get("aggregation") == "batch":  # one Dice for the batch, 1-D for Keras
        assert none.shape == (1,) and numpy_none.shape == ()
        expected = numpy_none.reshape(1)
    elif REGISTRY[name].kind == "positions":  # class losses: one value per position, as keras.losses
        assert none.shape == shape[:-1] and numpy_none.shape == shape[:-1]
        expected = numpy_none
    else:  # Dice: one value per sample
        assert none.shape == (shape[0],) and numpy_none.shape == (shape[0],)
        expected = numpy_none
    np.testing.assert_allclose(none, expected, **tolerance(dtype), err_msg="none")


@pytest.mark.parametrize("name", NAMES)
def test_sample_weight_scales_per_sample_values(name):
    # elementwise losses give Keras one value per row of the last axis, so (N, D) for them
    shape = (4, 5) if is_elementwise(name) else (4, 3, 3)
    y_true, y_pred = make_inputs(name, {}, shape, np.random.default_rng(9))
    sw = np.array([1.0, 0.0, 2.0, 0.5])
    per_sample = reference(name, y_true, y_pred, reduction="none")
    if per_sample.ndim > 1:
        # Keras's rule for elementwise losses; the class losses' per-position values of a sample
        # all take its weight
        per_sample = per_sample.mean(-1)
    # Keras: sum_i w_i l_i / N for "mean", sum_i w_i l_i (over all kept values) for "sum"
    loss = CLASSES[name]()
    np.testing.assert_allclose(
        call(loss, y_true, y_pred, sample_weight=sw), np.sum(sw * per_sample) / 4, rtol=2e-5, atol=1e-6
    )
    ones = call(loss, y_true, y_pred, sample_weight=np.ones(4))
    np.testing.assert_allclose(ones, call(loss, y_true, y_pred), rtol=1e-6)


def test_sample_weight_with_class_weights():
    # per-sample sums of w_label * nll, weighted by the sample weights, over sum of w_label
    labels = np.array([[0, 1, 2], [2, 2, 1], [1, 0, 0]])
    x = np.random.default_rng(3).normal(size=(3, 3, 3))
    cw, sw = np.array([1.0, 2.0, 0.5]), np.array([0.5, 1.0, 2.0])
    log_p = x - np.log(np.exp(x).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0] * cw[labels]
    expected = np.sum(sw * nll.sum(-1)) / cw[labels].sum()
    loss = lk.SparseCategoricalCELoss(from_logits=True, class_weights=cw)
    np.testing.assert_allclose(call(loss, labels, x, sample_weight=sw), expected, rtol=1e-5)
    np.testing.assert_allclose(call(loss, labels, x), nll.sum() / cw[labels].sum(), rtol=1e-5)


def test_all_ignored_batch_gives_zero():
    labels = np.full((3,), -1)
    x = np.random.default_rng(0).normal(size=(3, 4))
    for reduction in ("mean", "sum"):
        loss = lk.SparseCategoricalCELoss(from_logits=True, ignore_index=-1, reduction=reduction)
        assert call(loss, labels, x) == 0.0


def test_float64_dtype_is_used():
    with float_context("float64"):
        out = lk.MSELoss(dtype="float64")(np.ones((2, 3)), np.full((2, 3), 0.1))
    assert lk.MSELoss(dtype="float64").dtype == "float64"
    if keras.backend.backend() == "tensorflow":  # the one backend whose reductions keep float64
        assert keras.backend.standardize_dtype(out.dtype) == "float64"
        assert float(keras.ops.convert_to_numpy(out)) == pytest.approx(0.81, rel=1e-15)


@pytest.mark.parametrize("name", [n for n in NAMES if is_elementwise(n)])
def test_elementwise_losses_take_keras_n_targets_against_n_by_1_outputs(name):
    # Keras's habit: y of shape (N,) against a one-unit head (N, 1), in either order
    y_true, y_pred = make_inputs(name, {}, (6,), np.random.default_rng(4))
    expected = reference(name, y_true, y_pred)
    loss = CLASSES[name]()
    np.testing.assert_allclose(call(loss, y_true, y_pred[:, None]), expected, rtol=1e-5)
    np.testing.assert_allclose(call(loss, y_true[:, None], y_pred), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="never broadcasts"):
        call(loss, y_true[:, None], np.stack([y_pred, y_pred], 1))


def _variable_case(name, rng):
    y_true, y_pred = make_inputs(name, {}, (4, 3), rng)
    return (y_true if y_true.dtype.kind in "iu" else y_true.astype("float32")), y_pred.astype("float32")


@pytest.mark.parametrize("name", lossplug.available())
def test_a_variable_as_y_pred_gives_the_tensor_value(name):
    """keras.Variable (and tf.Variable on TensorFlow) as y_pred: the value of the same tensor."""
    y_true, y_pred = _variable_case(name, np.random.default_rng(5))
    loss = lossplug.get(name, framework="keras")
    expected = float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))
    variables = [keras.Variable(y_pred)]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        variables.append(tf.Variable(y_pred))
    for variable in variables:
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss(y_true, variable))), expected,
                                   rtol=1e-6)
