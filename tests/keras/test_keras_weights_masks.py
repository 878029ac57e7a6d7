"""Keras sample weights, masks, reduction names and edge inputs against Keras's built-in losses.

Issue 10 (per-position values, masks, compiled graphs, empty batches, dtypes, assigned
hyperparameters) and issue 11 item 1 (Keras's reduction names, per-sample weights under the mixed
policies and ``jit_compile``). Expected values come from ``keras.losses`` with the same convention
or from float64 NumPy written here; run once per backend (``KERAS_BACKEND=<b> pytest -m keras``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import lossplug.keras as lk
from lossplug._spec import LossParameterError

pytestmark = pytest.mark.keras

BACKEND = keras.backend.backend()
REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "none", None, "mean_with_sample_weight"]


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")), dtype=np.float64)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sequences(n, t, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, t, c)).astype("float32")
    labels = rng.integers(0, c, (n, t))
    return rng, logits, labels


def _class_pairs(logits, labels, rng):
    """(ours, Keras's, y_true, y_pred) for each class loss, the same convention on both sides."""
    c = logits.shape[-1]
    probs = _softmax(logits.astype(np.float64)).astype("float32")
    one_hot = np.eye(c, dtype="float32")[labels]
    soft = rng.dirichlet(np.ones(c), labels.shape).astype("float32")
    return {
        "sparse-logits": (
            lambda **r: lk.SparseCategoricalCELoss(from_logits=True, **r),
            lambda **r: keras.losses.SparseCategoricalCrossentropy(from_logits=True, **r),
            labels,
            logits,
        ),
        "sparse-probs": (
            lambda **r: lk.SparseCategoricalCELoss(**r),
            lambda **r: keras.losses.SparseCategoricalCrossentropy(**r),
            labels,
            probs,
        ),
        "categorical-logits": (
            lambda **r: lk.CategoricalCELoss(from_logits=True, **r),
            lambda **r: keras.losses.CategoricalCrossentropy(from_logits=True, **r),
            one_hot,
            logits,
        ),
        "categorical-soft": (
            lambda **r: lk.CategoricalCELoss(**r),
            lambda **r: keras.losses.CategoricalCrossentropy(**r),
            soft,
            probs,
        ),
        "kl": (lambda **r: lk.KLDivLoss(**r), lambda **r: keras.losses.KLDivergence(**r), soft, probs),
        # alpha=None is Keras's alpha=1.0 (its scalar alpha scales every class)
        "categorical-focal": (
            lambda **r: lk.CategoricalFocalLoss(from_logits=True, **r),
            lambda **r: keras.losses.CategoricalFocalCrossentropy(alpha=1.0, from_logits=True, **r),
            one_hot,
            logits,
        ),
    }


# --- per-position sample weights (N, T) of sequence models --------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@pytest.mark.parametrize("nt", [(3, 5), (4, 4)], ids=["N!=T", "N=T"])
def test_per_position_sample_weight_matches_builtin(nt, reduction):
    rng, logits, labels = _sequences(*nt, 4, seed=0)
    sw = rng.uniform(0.0, 2.0, nt).astype("float32")
    for name, (ours, theirs, y_true, y_pred) in _class_pairs(logits, labels, rng).items():
        got = _np(ours(reduction=reduction)(y_true, y_pred, sample_weight=sw))
        want = _np(theirs(reduction=reduction)(y_true, y_pred, sample_weight=sw))
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "none", "mean_with_sample_weight"], ids=str)
def test_elementwise_per_position_sample_weight_matches_builtin(reduction):
    rng = np.random.default_rng(1)
    y_pred = rng.uniform(0.05, 0.95, (3, 5, 2)).astype("float32")
    y_true = rng.integers(0, 2, (3, 5, 2)).astype("float32")
    sw = rng.uniform(0.0, 2.0, (3, 5)).astype("float32")
    for ours, theirs in [
        (lk.MSELoss, keras.losses.MeanSquaredError),
        (lk.MAELoss, keras.losses.MeanAbsoluteError),
        (lk.HuberLoss, keras.losses.Huber),
        (lk.BCELoss, keras.losses.BinaryCrossentropy),
    ]:
        got = _np(ours(reduction=reduction)(y_true, y_pred, sample_weight=sw))
        want = _np(theirs(reduction=reduction)(y_true, y_pred, sample_weight=sw))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=ours.__name__)


def test_per_sample_weights_weigh_every_position_of_their_sample():
    # (N,) weights on (N, T, C) sequences: Keras's built-ins cannot apply them (their (N, T) values
    # broadcast against (N,)); lossplug spreads them over the positions: sum_it s_i l_it / (N T)
    rng, logits, labels = _sequences(3, 5, 4, seed=2)
    sw = np.array([0.5, 0.0, 2.0], dtype="float32")
    log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    got = _np(lk.SparseCategoricalCELoss(from_logits=True)(labels, logits, sample_weight=sw))
    np.testing.assert_allclose(got, (sw[:, None] * nll).sum() / 15, rtol=2e-5)
    got = _np(
        lk.SparseCategoricalCELoss(from_logits=True, reduction="none")(labels, logits, sample_weight=sw)
    )
    np.testing.assert_allclose(got, sw[:, None] * nll, rtol=2e-5, atol=1e-6)


def test_sample_weight_of_a_wrong_shape_names_both_shapes():
    _, logits, labels = _sequences(3, 5, 4, seed=3)
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(3, 5\)"):
        lk.SparseCategoricalCELoss(from_logits=True)(labels, logits, sample_weight=np.ones((5, 3)))


def test_class_weights_and_ignored_positions_with_per_position_weights():
    # lossplug's weighted mean with Keras's weights: sum(s k w l) / sum(k w)
    rng, logits, labels = _sequences(3, 4, 3, seed=4)
    labels[0, 1] = labels[2, 3] = -1
    cw, sw = np.array([1.0, 2.0, 0.5]), rng.uniform(0.0, 2.0, (3, 4))
    keep = labels != -1
    safe = np.where(keep, labels, 0)
    log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, safe[..., None], -1)[..., 0]
    w = cw[safe] * keep
    loss = lk.SparseCategoricalCELoss(from_logits=True, class_weights=cw, ignore_index=-1)
    np.testing.assert_allclose(
        _np(loss(labels, logits, sample_weight=sw)), (sw * w * nll).sum() / w.sum(), rtol=2e-5
    )
    mws = lk.SparseCategoricalCELoss(
        from_logits=True, class_weights=cw, ignore_index=-1, reduction="mean_with_sample_weight"
    )
    np.testing.assert_allclose(
        _np(mws(labels, logits, sample_weight=sw)), (sw * w * nll).sum() / (sw * w).sum(), rtol=2e-5
    )
    # without class weights, ignore_index is Keras's ignore_class, sample weights included
    ours = lk.SparseCategoricalCELoss(from_logits=True, ignore_index=-1)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    np.testing.assert_allclose(
        _np(ours(labels, logits, sample_weight=sw)), _np(theirs(labels, logits, sample_weight=sw)), rtol=2e-5
    )


# --- Keras masks: a Masking layer before a per-step Dense ---------------------------------------


def _masked_model(t, features, units, activation=None):
    inp = keras.Input((t, features))
    out = keras.layers.Dense(units, activation=activation)(keras.layers.Masking(0.0)(inp))
    return keras.Model(inp, out)


def _evaluate(model, loss, x, y, jit, sample_weight=None):
    model.compile(loss=loss, jit_compile=jit, run_eagerly=not jit)
    return model.evaluate(x, y, sample_weight=sample_weight, batch_size=len(x), verbose=0)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_masks_give_the_builtins_number(jit):
    rng, _, labels = _sequences(4, 4, 3, seed=5)  # N = T: a per-sample rule would broadcast silently
    x = rng.normal(size=(4, 4, 2)).astype("float32")
    x[0, 2:] = 0.0
    x[3, 1:] = 0.0
    one_hot = np.eye(3, dtype="float32")[labels]
    soft = rng.dirichlet(np.ones(3), (4, 4)).astype("float32")
    sw = rng.uniform(0.1, 2.0, (4, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    logits_model, probs_model = _masked_model(4, 2, 3), _masked_model(4, 2, 3, "softmax")
    cases = [
        (
            logits_model,
            lk.SparseCategoricalCELoss(from_logits=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            labels,
        ),
        (
            logits_model,
            lk.SparseCategoricalCELoss(from_logits=True, ignore_index=2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2),
            labels,
        ),
        (
            logits_model,
            lk.CategoricalCELoss(from_logits=True),
            keras.losses.CategoricalCrossentropy(from_logits=True),
            one_hot,
        ),
        (probs_model, lk.CategoricalCELoss(), keras.losses.CategoricalCrossentropy(), soft),
        (probs_model, lk.KLDivLoss(), keras.losses.KLDivergence(), soft),
        (probs_model, lk.MSELoss(), keras.losses.MeanSquaredError(), soft),
    ]
    for model, ours, theirs, y in cases:
        for weights in (None, sw):
            got = _evaluate(model, ours, x, y, jit, weights)
            want = _evaluate(model, theirs, x, y, jit, weights)
            np.testing.assert_allclose(
                got, want, rtol=2e-5, err_msg=f"{ours.name} weights={weights is not None}"
            )


def test_mask_is_a_masked_mean_by_hand():
    rng, _, labels = _sequences(3, 5, 4, seed=6)
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    x[1, 2:] = 0.0
    keras.utils.set_random_seed(1)
    model = _masked_model(5, 2, 4)
    logits = _np(model(x)).astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    mask = (x != 0).any(-1)
    got = _evaluate(model, lk.SparseCategoricalCELoss(from_logits=True), x, labels, jit=False)
    np.testing.assert_allclose(got, (nll * mask).sum() / mask.sum(), rtol=2e-5)


# --- Keras's reduction names --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
def test_keras_reduction_names_round_trip(reduction):
    loss = lk.SparseCategoricalCELoss(from_logits=True, reduction=reduction)
    assert loss.reduction == reduction and loss.get_config()["reduction"] == reduction
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is type(loss) and again.reduction == reduction
    _, logits, labels = _sequences(2, 3, 4, seed=7)
    np.testing.assert_allclose(_np(again(labels, logits)), _np(loss(labels, logits)), rtol=1e-6)


def test_keras_names_mean_what_keras_means():
    _, logits, labels = _sequences(2, 3, 4, seed=8)
    same = [("sum_over_batch_size", "mean"), (None, "none")]
    for keras_name, ours in same:
        a = lk.SparseCategoricalCELoss(from_logits=True, reduction=keras_name)(labels, logits)
        b = lk.SparseCategoricalCELoss(from_logits=True, reduction=ours)(labels, logits)
        np.testing.assert_array_equal(_np(a), _np(b))
    sw = np.array([[1.0, 0.0, 3.0], [0.5, 0.5, 0.0]], dtype="float32")
    loss = lk.SparseCategoricalCELoss(from_logits=True, reduction="mean_with_sample_weight")
    none = _np(lk.SparseCategoricalCELoss(from_logits=True, reduction="none")(labels, logits))
    np.testing.assert_allclose(
        _np(loss(labels, logits, sample_weight=sw)), (sw * none).sum() / sw.sum(), rtol=2e-6
    )


def test_a_bad_reduction_lists_both_sets_of_names():
    with pytest.raises(LossParameterError, match="'sum_over_batch_size', None, 'mean_with_sample_weight'"):
        lk.MSELoss(reduction="avg")
    loss = lk.MSELoss()
    loss.reduction = "sum_over_batch_size"  # Keras's names may be assigned too
    with pytest.raises(LossParameterError, match="reduction='avg'"):
        loss.reduction = "avg"


# --- per-sample weights with every loss, under the mixed policies and jit_compile ----------------

POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]


def _every_loss(rng):
    """name -> (ours, reference: a built-in or NumPy of (y_true, y_pred float64), y_true, y_pred)."""
    n, c = 6, 3
    probs = rng.uniform(0.05, 0.95, (n, c)).astype("float32")
    binary = rng.integers(0, 2, (n, c)).astype("float32")
    logits = rng.normal(size=(n, c)).astype("float32")
    labels = rng.integers(0, c, (n,))
    dist = _softmax(rng.normal(size=(n, c))).astype("float32")

    def wbce(y, p, a=0.75):  # w+ = a, w- = 1 - a, the mean over the last axis per sample
        return -(a * y * np.log(p) + (1 - a) * (1 - y) * np.log(1 - p)).mean(-1)

    def dice(y, p, s=1e-5):
        return 1 - (2 * (p * y).sum(-1) + s) / ((p * p).sum(-1) + (y * y).sum(-1) + s)

    return {
        "mse": (lk.MSELoss(), keras.losses.MeanSquaredError(), binary, probs),
        "mae": (lk.MAELoss(), keras.losses.MeanAbsoluteError(), binary, probs),
        "huber": (lk.HuberLoss(delta=0.3), keras.losses.Huber(delta=0.3), binary, logits),
        "bce": (
            lk.BCELoss(from_logits=True),
            keras.losses.BinaryCrossentropy(from_logits=True),
            binary,
            logits,
        ),
        "weighted_bce": (lk.WeightedBCELoss(pos_weight=0.75, neg_weight=0.25), wbce, binary, probs),
        "categorical_ce": (
            lk.CategoricalCELoss(from_logits=True),
            keras.losses.CategoricalCrossentropy(from_logits=True),
            np.eye(c)[labels],
            logits,
        ),
        "sparse_categorical_ce": (
            lk.SparseCategoricalCELoss(from_logits=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            labels,
            logits,
        ),
        "dice": (lk.DiceLoss(), dice, binary, probs),
        "kl_div": (lk.KLDivLoss(), keras.losses.KLDivergence(), dist, probs),
    }


def _identity_model(shape):
    inp = keras.Input(shape)
    return keras.Model(inp, keras.layers.Identity()(inp))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("policy", POLICIES)
def test_per_sample_weights_with_every_loss(policy, jit):
    rng = np.random.default_rng(9)
    sw = np.array([1.0, 0.0, 2.0, 0.5, 1.5, 0.25], dtype="float32")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        for name, (ours, ref, y_true, y_pred) in _every_loss(rng).items():
            model = _identity_model(y_pred.shape[1:])
            seen = _np(model.predict(y_pred, verbose=0))  # y_pred as the policy rounds it
            got = _evaluate(model, ours, y_pred, y_true, jit, sw)
            if isinstance(ref, keras.losses.Loss):
                want = _evaluate(model, ref, y_pred, y_true, jit, sw)
            else:
                want = np.sum(sw * ref(y_true.astype(np.float64), seen)) / len(sw)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=f"{name} {policy}")
    finally:
        keras.config.set_dtype_policy(previous)


# --- compiled graphs: out-of-range input gives NaN ----------------------------------------------


def test_jit_out_of_range_input_is_nan():
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(6, 4)).astype("float32")
    labels = rng.integers(0, 4, (6,))
    bad = labels.copy()
    bad[2] = 7
    cases = [
        ("label", lk.SparseCategoricalCELoss(from_logits=True), bad, logits),
        ("negative label", lk.SparseCategoricalCELoss(from_logits=True), np.where(bad == 7, -3, bad), logits),
        ("probabilities", lk.SparseCategoricalCELoss(), labels, np.abs(logits) + 1.0),
        ("bce probabilities", lk.BCELoss(), rng.integers(0, 2, (6, 4)).astype("float32"), logits),
        ("targets", lk.BCELoss(from_logits=True), 3 * rng.uniform(size=(6, 4)).astype("float32"), logits),
        ("dice label", lk.DiceLoss(from_logits=True), np.full((6,), 7), logits),
    ]
    for what, loss, y_true, y_pred in cases:
        with pytest.raises(ValueError):  # eager: the check names the problem
            loss(y_true, y_pred)
        try:
            got = _evaluate(_identity_model(y_pred.shape[1:]), loss, y_pred, y_true, jit=True)
        except ValueError as exc:
            # torch backend: torch.compile breaks the graph at the value check's host read and
            # runs that part eagerly, so the check itself may raise; never a finite number
            assert BACKEND == "torch" and ("out of range" in str(exc) or "must lie" in str(exc)), what
            continue
        assert np.isnan(got), what
    fine = _evaluate(
        _identity_model((4,)), lk.SparseCategoricalCELoss(from_logits=True), logits, labels, jit=True
    )
    want = _evaluate(
        _identity_model((4,)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        logits,
        labels,
        jit=True,
    )
    np.testing.assert_allclose(fine, want, rtol=1e-5)


def _jit(fn):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs the Keras step eagerly: the checks raise")
def test_jit_bad_entries_of_an_elementwise_loss_are_nan_where_they_are():
    """Under XLA the range test of an elementwise loss is part of its own loop: unreduced, only
    the rows holding a bad entry are NaN; reduced, the loss is NaN; the gradient stays finite.
    A NaN target is caught too, also where the formula would skip it (KL's 0 log 0 = 0 rule)."""
    from keras_helpers import value_and_grad

    rng = np.random.default_rng(11)
    y_pred = rng.normal(size=(4, 3)).astype("float32")
    y_true = rng.uniform(size=(4, 3)).astype("float32")
    y_true[1, 2] = 3.0
    rows = _np(_jit(lambda t, p: lk.BCELoss(from_logits=True, reduction="none")(t, p))(y_true, y_pred))
    assert np.isnan(rows[1]) and np.isfinite(rows[[0, 2, 3]]).all(), rows
    value, grad = value_and_grad(lambda v: lk.BCELoss(from_logits=True)(y_true, v), y_pred, compiled=True)
    assert np.isnan(value) and np.isfinite(grad).all()
    for loss, t, p in [
        (lk.KLDivLoss(), np.array([[np.nan, 0.5, 0.5]]), np.array([[0.2, 0.3, 0.5]])),
        (lk.BCELoss(), np.array([[0.0, 1.0]]), np.array([[0.2, np.nan]])),
        (lk.PoissonLoss(), np.array([[np.nan, 1.0]]), np.array([[0.2, 0.5]])),
    ]:
        value, _ = value_and_grad(lambda v, loss=loss, t=t: loss(t.astype("float32"), v), p, compiled=True)
        assert np.isnan(value), type(loss).__name__


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs the Keras step eagerly: the checks raise")
@pytest.mark.parametrize("where", ["y_pred", "y_true"])
@pytest.mark.parametrize("make", [lk.KLDivLoss, lk.CategoricalCELoss, lk.CategoricalFocalLoss, lk.DiceLoss])
def test_jit_a_bad_class_vector_makes_its_own_position_nan(make, where):
    """A probability (or target) out of range poisons the position (sample) whose class vector
    holds it, not the batch: the range test is reduced along the class axis inside the loss's own
    loop, or (JAX, a loss of separable terms) selects a NaN into that entry of ``y_pred``."""
    from keras_helpers import value_and_grad

    rng = np.random.default_rng(12)
    y_pred = rng.dirichlet(np.ones(3), size=4).astype("float32")
    y_true = rng.dirichlet(np.ones(3), size=4).astype("float32")
    bad = y_pred.copy()
    if where == "y_pred":
        bad[2, 1] = 1.5
    else:
        bad, y_true = y_pred, y_true.copy()
        y_true[2, 1] = -0.5
    rows = _np(_jit(lambda t, p: make(reduction="none")(t, p))(y_true, bad))
    assert rows.shape == (4,)
    assert np.isnan(rows[2]) and np.isfinite(rows[[0, 1, 3]]).all(), rows
    loss = make()
    value, grad = value_and_grad(lambda v: loss(y_true, v), bad, compiled=True)
    assert np.isnan(value) and np.isfinite(grad).all()


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs the Keras step eagerly: the checks raise")
@pytest.mark.parametrize("make, selected", [
    (lambda: lk.KLDivLoss(), True),
    (lambda: lk.CategoricalFocalLoss(), True),
    (lambda: lk.CategoricalCELoss(from_logits=True), False),  # (NaN in a logit: the row's gradient)
    (lambda: lk.CategoricalCELoss(numerics="keras"), False),  # (renormalised: every entry)
    (lambda: lk.CategoricalCELoss(ignore_index=0), False),
    (lambda: lk.DiceLoss(), False),
], ids=["kl", "categorical-focal", "ce-logits", "ce-keras-numerics", "ce-ignore", "dice"])
def test_jit_jax_selects_nan_into_the_probabilities_of_a_separable_loss(make, selected):
    """On JAX (only there) a loss of separable terms on probabilities judges its inputs by a
    select into ``y_pred`` before the formula (``core.poison_inputs``); the others after it."""
    from lossplug import core
    from lossplug.frameworks.ops import get_backend

    loss, taken = make(), []

    def judge(t, p):
        p, took = core.poison_inputs(loss.spec, get_backend("keras"), p, t, loss.params())
        taken.append(took)
        return p

    y = np.full((4, 3), 1 / 3, "float32")
    _jit(judge)(y, y)
    assert taken == [selected and BACKEND == "jax"]


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs the Keras step eagerly: the checks raise")
def test_jit_a_bad_entry_of_per_class_dice_makes_its_sample_nan():
    """Dice per class on (N, H, W, C) is one value per sample: the range test of the
    probabilities, and of a label map (which has no class axis), reduces over each sample, not
    over the batch."""
    rng = np.random.default_rng(13)
    y_pred = rng.dirichlet(np.ones(3), size=(4, 5, 5)).astype("float32")
    masks = np.eye(3, dtype="float32")[rng.integers(0, 3, (4, 5, 5))]
    bad = y_pred.copy()
    bad[2, 3, 1, 1] = -0.5
    loss = lk.DiceLoss(per_class=True, reduction="none")
    values = _np(_jit(lambda t, p: loss(t, p))(masks, bad))
    assert values.shape == (4,)
    assert (np.isnan(values) == (np.arange(4) == 2)).all(), values
    labels = rng.integers(0, 3, (4, 5, 5)).astype("int32")
    labels[1, 0, 0] = 7
    values = _np(_jit(lambda t, p: loss(t, p))(labels, y_pred))
    assert (np.isnan(values) == (np.arange(4) == 1)).all(), values


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs the Keras step eagerly: the checks raise")
@pytest.mark.parametrize("make", [
    lambda: lk.DiceLoss(squared=False, aggregation="batch"),
    lambda: lk.TverskyLoss(aggregation="batch", per_class=True),
    lambda: lk.JaccardLoss(aggregation="batch"),
], ids=["dice", "tversky-per-class", "jaccard"])
def test_jit_an_overlap_loss_over_the_batch_judges_its_inputs_whole(make):
    """With ``aggregation="batch"`` the loss is one number, so its inputs are judged whole (on JAX
    by their least and greatest entries, ``core._extremes_outside``): any entry out of range, NaN
    or infinite, in either input or a label, makes it NaN, a finite entry out of range with a
    finite (zero) gradient (a NaN reaches the sums, and so the gradient); inputs at the very ends
    of the range do not."""
    from keras_helpers import value_and_grad

    rng = np.random.default_rng(14)
    y_pred = rng.dirichlet(np.ones(3), size=(2, 4, 4)).astype("float32")
    masks = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 4, 4))]
    edges = y_pred.copy()
    edges[0, 0, 0], edges[1, 3, 3] = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    loss = make()
    want = float(_np(loss(masks, edges)))
    value, grad = value_and_grad(lambda v: loss(masks, v), edges, compiled=True)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    assert np.isfinite(grad).all()
    for bad_value in (1.5, -1e-3, np.nan, np.inf):
        for where in ("y_pred", "y_true"):
            p, t = edges.copy(), masks.copy()
            (p if where == "y_pred" else t)[1, 2, 3, 1] = bad_value
            value, grad = value_and_grad(lambda v, t=t: loss(t, v), p, compiled=True)
            assert np.isnan(value), (where, bad_value)
            assert np.isfinite(grad).all() or not np.isfinite(bad_value), (where, bad_value)
    labels = rng.integers(0, 3, (2, 4, 4)).astype("int32")
    for bad_label in (3, -1):
        bad = labels.copy()
        bad[0, 1, 2] = bad_label
        assert np.isnan(_np(_jit(lambda t, p: loss(t, p))(bad, y_pred))), bad_label
    assert np.isfinite(_np(_jit(lambda t, p: loss(t, p))(labels, y_pred)))


# --- empty batches, dtypes, assigned hyperparameters ---------------------------------------------


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_empty_batch_with_logits_is_the_builtins_result(reduction):
    empty = np.zeros((0, 4), "float32")
    labels = np.zeros((0,), "int32")
    pairs = [
        (
            lk.SparseCategoricalCELoss(from_logits=True, reduction=reduction),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction),
            labels,
        ),
        (
            lk.CategoricalCELoss(from_logits=True, reduction=reduction),
            keras.losses.CategoricalCrossentropy(from_logits=True, reduction=reduction),
            empty,
        ),
        (
            lk.KLDivLoss(from_logits=True, reduction=reduction),
            keras.losses.KLDivergence(reduction=reduction),
            empty,
        ),
        (
            lk.BCELoss(from_logits=True, reduction=reduction),
            keras.losses.BinaryCrossentropy(from_logits=True, reduction=reduction),
            empty,
        ),
    ]
    for ours, theirs, y_true in pairs:
        got, want = _np(ours(y_true, empty)), _np(theirs(y_true, empty))
        assert got.shape == want.shape, ours.name
        np.testing.assert_array_equal(got, want)
    dice = _np(
        lk.DiceLoss(from_logits=True, reduction=reduction)(
            np.zeros((0, 3, 3), "int32"), np.zeros((0, 3, 3, 4), "float32")
        )
    )
    assert dice.shape == (0,)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_dtype_checks_and_computes(dtype):
    rng = np.random.default_rng(11)
    probs = rng.uniform(0.05, 0.95, (6, 4)).astype("float32")
    binary = rng.integers(0, 2, (6, 4))
    labels = rng.integers(0, 4, (6,))
    dist = _softmax(rng.normal(size=(6, 4))).astype("float32")
    for cls, y_true in [
        (lk.BCELoss, binary),
        (lk.SparseCategoricalCELoss, labels),
        (lk.DiceLoss, labels),
        (lk.KLDivLoss, dist),
    ]:
        got = _np(cls(dtype=dtype)(y_true, probs))
        want = _np(cls()(y_true, probs))
        np.testing.assert_allclose(got, want, rtol=3e-2, atol=1e-3, err_msg=cls.__name__)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):  # the eager value check still runs
            cls(dtype=dtype)(y_true, probs + 1.0)


@pytest.mark.parametrize(
    "cls, name, value",
    [
        ("WeightedBCELoss", "pos_weight", -2),
        ("DiceLoss", "smooth", -1),
        ("BCELoss", "eps", 0.7),
        ("HuberLoss", "delta", 0),
        ("CategoricalCELoss", "class_weights", [0.0, 0.0]),
    ],
)
def test_assigned_hyperparameter_is_checked_as_at_construction(cls, name, value):
    with pytest.raises(LossParameterError) as at_construction:
        getattr(lk, cls)(**{name: value})
    loss = getattr(lk, cls)()
    with pytest.raises(LossParameterError) as assigned:
        setattr(loss, name, value)
    assert str(assigned.value) == str(at_construction.value)


def test_assigned_hyperparameter_takes_effect_and_saves():
    loss = lk.HuberLoss()
    loss.delta = 2
    assert loss.delta == 2.0 and loss.get_config()["delta"] == 2.0
    y_pred, y_true = np.array([[0.5, 3.0]], "float32"), np.zeros((1, 2), "float32")
    np.testing.assert_allclose(
        _np(loss(y_true, y_pred)), _np(keras.losses.Huber(delta=2.0)(y_true, y_pred)), rtol=1e-6
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_logits_are_never_a_finite_loss_where_keras_is_not(bad):
    rng, logits, labels = _sequences(4, 3, 5, seed=12)
    logits[1, 2, 0] = bad
    labels[1, 2] = 0  # the position with the bad logit looks at it
    one_hot = np.eye(5, dtype="float32")[labels]
    pairs = [
        (
            lk.SparseCategoricalCELoss(from_logits=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            labels,
        ),
        (
            lk.CategoricalCELoss(from_logits=True),
            keras.losses.CategoricalCrossentropy(from_logits=True),
            one_hot,
        ),
        (lk.BCELoss(from_logits=True), keras.losses.BinaryCrossentropy(from_logits=True), one_hot),
    ]
    for ours, theirs, y_true in pairs:
        got, want = _np(ours(y_true, logits)), _np(theirs(y_true, logits))
        if np.isfinite(want):
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=ours.name)
        else:
            assert not np.isfinite(got), ours.name
