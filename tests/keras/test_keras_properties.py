"""Property tests: on random shapes and values, Keras agrees with NumPy and no loss is negative."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_helpers import (
    CLASSES,
    NAMES,
    PARAM_CASES,
    bulk_call,
    case_classes,
    input_kind,
    loss_params,
    make_inputs,
    reference,
)

pytestmark = pytest.mark.keras

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, names=NAMES):
    """A loss with one of its parameter cases, and valid inputs of a random shape and scale."""
    name = draw(st.sampled_from(names))
    case = draw(st.sampled_from(PARAM_CASES[name]))
    classes = case_classes(case, default=0) or draw(st.integers(2, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape = (draw(st.integers(1, 4)), *spatial, classes)
    y_true, y_pred = make_inputs(name, case, shape, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    if case.get("from_logits") or input_kind(name, case) in ("regression", "vectors", "scores", "scores_pm1"):
        y_pred = y_pred * draw(st.floats(0.01, 50.0))
    return name, loss_params(case), y_true, y_pred


@SETTINGS
@given(problems())
def test_keras_agrees_with_numpy_and_is_non_negative(problem):
    name, params, y_true, y_pred = problem
    losses = [CLASSES[name](**params), CLASSES[name](**params, reduction="none")]
    mean, none = bulk_call(losses, y_true, y_pred)
    expected = reference(name, y_true, y_pred, **params)
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-5)
    # KL with q clipped to [eps, 1] may dip below 0 by about C * eps; the rest are sums of
    # non-negative terms, but the Poisson negative log-likelihood without log(y!) ("counts" inputs)
    if input_kind(name, {}) != "counts":
        assert np.all(none >= -1e-5) and mean >= -1e-5


@SETTINGS
# smooth from 1e-5 (the default): with smooth = 0, a predicted probability whose square is
# subnormal in float32 (a logit gap of ~44) is flushed to 0 by XLA, and an empty-vs-empty 1 is
# then compared with float64's 0/5e-39 = 0; empty masks with smooth = 0 are checked by hand in
# tests/test_fused_dice.py and tests/test_values_hand.py
@given(problems(names=["dice"]), st.floats(1e-5, 2.0))
def test_dice_lies_in_the_unit_interval(problem, smooth):
    name, params, y_true, y_pred = problem
    params = {**params, "smooth": smooth}
    (none,) = bulk_call([CLASSES[name](**params, reduction="none")], y_true, y_pred)
    assert np.all(none >= -1e-6) and np.all(none <= 1 + 1e-6)
    np.testing.assert_allclose(
        none.mean(), reference(name, y_true, y_pred, **params), rtol=1e-4, atol=1e-5
    )
