"""Bad parameters fail at construction; bad inputs raise a ValueError that names the problem.

Input checks run through both the NumPy functions and the torch modules (``framework`` fixture).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from loss_cases import CLASS_NAMES

import lossplug
import lossplug.numpy
import lossplug.torch
from lossplug import LossParameterError
from lossplug._spec import REGISTRY


@pytest.fixture(params=["numpy", "torch"])
def framework(request):
    return request.param


def call(framework, name, y_pred, y_true, **params):
    """Run loss ``name``; 2-D inputs only, so the class axis (-1 / dim 1) is the same in both."""
    y_pred, y_true = np.asarray(y_pred, dtype=float), np.asarray(y_true)
    if framework == "numpy":
        return getattr(lossplug.numpy, name)(y_pred, y_true, **params)
    loss = getattr(lossplug.torch, CLASS_NAMES[name])(**params)
    true = torch.as_tensor(y_true) if y_true.dtype.kind in "iu" else torch.tensor(y_true, dtype=torch.float32)
    return loss(torch.tensor(y_pred, dtype=torch.float32), true)


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "bce", "weighted_bce", "categorical_ce", "kl_div"])
def test_shape_mismatch_names_both_shapes(framework, name):
    y_pred, y_true = np.full((3, 4), 0.25), np.full((4, 3), 0.25)
    with pytest.raises(ValueError, match=re.escape("(3, 4)") + ".*" + re.escape("(4, 3)")):
        call(framework, name, y_pred, y_true)


def test_no_broadcasting(framework):
    # (3, 1) against (3,) would broadcast to (3, 3) silently in plain NumPy/torch arithmetic
    with pytest.raises(ValueError, match=re.escape("(3, 1)") + ".*" + re.escape("(3,)")):
        call(framework, "mse", np.zeros((3, 1)), np.zeros(3))


def test_sparse_labels_shape(framework):
    with pytest.raises(ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(3,)")):
        call(framework, "sparse_categorical_ce", np.full((2, 3), 1 / 3), np.array([0, 1, 2]))


def test_dice_label_map_shape(framework):
    with pytest.raises(ValueError, match="label map"):
        call(framework, "dice", np.full((2, 3), 1 / 3), np.array([0, 1, 2]))


def test_class_weights_of_the_wrong_length(framework):
    with pytest.raises(ValueError, match="class_weights has 2 entries but y_pred has 3 classes"):
        call(framework, "sparse_categorical_ce", np.full((2, 3), 1 / 3), np.array([0, 1]),
             class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights has 4 entries"):
        call(framework, "dice", np.full((2, 3), 1 / 3), np.array([0, 1]), class_weights=[1.0] * 4,
             per_class=True)


def test_class_axis_out_of_range(framework):
    with pytest.raises(ValueError, match="class axis 2 is out of range"):
        call(framework, "categorical_ce", np.full((2, 3), 1 / 3), np.eye(3)[:2], axis=2)


def test_scalar_input_for_a_class_loss(framework):
    with pytest.raises(ValueError, match="class axis"):
        call(framework, "categorical_ce", np.float64(0.5), np.float64(1.0))


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sparse_categorical_ce", "dice"])
@pytest.mark.parametrize("bad", [3, -1, 7])
def test_label_out_of_range_names_the_label(framework, name, bad):
    labels = np.array([0, bad])
    with pytest.raises(ValueError, match=f"label {bad} is out of range.*must be in \\[0, 2\\]"):
        call(framework, name, np.full((2, 3), 1 / 3), labels)


def test_ignore_index_is_allowed_outside_the_label_range(framework):
    p, labels = np.full((2, 3), 1 / 3), np.array([0, 255])
    out = call(framework, "sparse_categorical_ce", p, labels, ignore_index=255)
    assert np.isclose(float(out), np.log(3), rtol=1e-6)
    with pytest.raises(ValueError, match="label 255 is out of range.*or equal ignore_index=-100"):
        call(framework, "sparse_categorical_ce", p, labels, ignore_index=-100)


def test_non_integer_labels(framework):
    with pytest.raises(ValueError, match="labels in y_true must be integers"):
        call(framework, "sparse_categorical_ce", np.full((2, 3), 1 / 3), np.array([0.5, 1.0]))


PROBABILITY_LOSSES = ["bce", "weighted_bce", "categorical_ce", "dice"]


@pytest.mark.parametrize("name", PROBABILITY_LOSSES)
@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_probabilities_outside_unit_interval(framework, name, bad):
    y_pred = np.array([[0.2, 0.3, bad]])
    with pytest.raises(ValueError, match=r"probabilities, from_logits=False\) must lie in \[0, 1\]"):
        call(framework, name, y_pred, np.array([[0.0, 1.0, 0.0]]))
    # the same numbers as logits are fine
    assert np.isfinite(float(call(framework, name, y_pred, np.array([[0.0, 1.0, 0.0]]), from_logits=True)))


@pytest.mark.parametrize("name", PROBABILITY_LOSSES)
def test_nan_probabilities_are_rejected(framework, name):
    with pytest.raises(ValueError, match="found values from nan"):
        call(framework, name, np.array([[0.2, np.nan, 0.3]]), np.array([[0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("name", ["bce", "sparse_categorical_ce", "dice"])
def test_an_empty_batch_is_checked_without_crashing(framework, name):
    y_true = np.zeros((0,), dtype=np.int64) if name == "sparse_categorical_ce" else np.zeros((0, 3))
    assert np.isnan(float(call(framework, name, np.zeros((0, 3)), y_true)))  # mean of nothing, as torch


def test_probabilities_found_range_is_reported(framework):
    with pytest.raises(ValueError, match="found values from 0.2 to 1.5"):
        call(framework, "bce", np.array([0.2, 1.5]), np.array([0.0, 1.0]))


def test_kl_div_probabilities_and_log_probabilities(framework):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        call(framework, "kl_div", np.array([[0.5, 1.5]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"log_input=True\) must lie in \(-inf, 0\]"):
        call(framework, "kl_div", np.array([[-0.5, 0.1]]), np.array([[0.5, 0.5]]), log_input=True)


@pytest.mark.parametrize("name", ["bce", "categorical_ce", "kl_div"])
def test_targets_outside_unit_interval(framework, name):
    with pytest.raises(ValueError, match=r"y_true \(targets\) must lie in \[0, 1\]"):
        call(framework, name, np.array([[0.5, 0.5]]), np.array([[2.0, -1.0]]))


def test_value_checks_can_be_turned_off(framework):
    with lossplug.value_checks(False):
        out = call(framework, "bce", np.array([1.5, 0.5]), np.array([1.0, 0.0]))
    assert np.isfinite(float(out))
    with pytest.raises(ValueError):  # and the context manager restored them
        call(framework, "bce", np.array([1.5, 0.5]), np.array([1.0, 0.0]))


# --- parameters: fail at construction -----------------------------------------------------------

BAD_PARAMS = [
    ("huber", {"delta": -1.0}, "delta=-1.0 is invalid; it must be a number > 0"),
    ("huber", {"delta": 0}, "delta=0 is invalid"),
    ("huber", {"delta": "1"}, "delta='1' is invalid"),
    ("dice", {"smooth": -1e-5}, "smooth=-1e-05 is invalid; it must be a number >= 0"),
    ("weighted_bce", {"pos_weight": -2.0}, "pos_weight=-2.0 is invalid"),
    ("weighted_bce", {"neg_weight": -0.1}, "neg_weight=-0.1 is invalid"),
    ("categorical_ce", {"class_weights": [1.0, -1.0, 2.0]}, "class_weights=.* is invalid"),
    ("sparse_categorical_ce", {"class_weights": [0.0, 0.0]}, "not all 0"),
    ("sparse_categorical_ce", {"class_weights": "abc"}, "class_weights='abc' is invalid"),
    ("dice", {"per_class": True, "class_weights": [1.0, -3.0]}, "class_weights=.* is invalid"),
    ("mse", {"reduction": "avg"}, "reduction='avg' is invalid; it must be one of 'mean', 'sum', 'none'"),
    ("dice", {"reduction": None}, "reduction=None is invalid"),
    ("bce", {"label_smoothing": 1.5}, "label_smoothing=1.5 is invalid"),
    ("bce", {"eps": 0.0}, "eps=0.0 is invalid"),
    ("bce", {"from_logits": "yes"}, "from_logits='yes' is invalid; it must be True or False"),
    ("sparse_categorical_ce", {"ignore_index": 1.5}, "ignore_index=1.5 is invalid"),
    ("dice", {"aggregation": "global"}, "aggregation='global' is invalid"),
    ("dice", {"activation": "relu"}, "activation='relu' is invalid"),
    ("dice", {"class_weights": [1.0, 2.0]}, "class_weights needs per_class=True"),
    ("dice", {"sync_dist": True}, 'sync_dist=True needs aggregation="batch"'),
    ("kl_div", {"from_logits": True, "log_input": True}, "exclude each other"),
]


@pytest.mark.parametrize("name,params,message", BAD_PARAMS, ids=[f"{n}-{p}" for n, p, _ in BAD_PARAMS])
def test_bad_parameter_fails_at_construction(name, params, message):
    with pytest.raises(LossParameterError, match=message):
        getattr(lossplug.torch, CLASS_NAMES[name])(**params)
    with pytest.raises(LossParameterError, match=message):
        lossplug.get(name, **params)  # the NumPy partial is checked when built, too
    with pytest.raises(LossParameterError, match=message):
        lossplug.get(name, framework="torch", **params)


def test_parameter_error_is_value_and_type_error():
    with pytest.raises(ValueError):
        lossplug.torch.HuberLoss(delta=-1.0)
    with pytest.raises(TypeError):  # as Python's own "unexpected keyword argument"
        lossplug.torch.HuberLoss(delt=1.0)


def test_numpy_function_checks_parameters_before_the_inputs():
    with pytest.raises(LossParameterError, match="delta"):
        lossplug.numpy.huber([1.0], [1.0, 2.0], delta=-1.0)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_unknown_parameter_lists_the_valid_ones(name):
    valid = [p.name for p in REGISTRY[name].params]
    for build in (
        lambda: getattr(lossplug.torch, CLASS_NAMES[name])(bogus=1),
        lambda: lossplug.get(name, bogus=1),
        lambda: lossplug.numpy.__dict__[name]([0.5], [0.5], bogus=1),
    ):
        with pytest.raises(LossParameterError, match="unknown parameter.*bogus") as info:
            build()
        assert all(v in str(info.value) for v in valid)


def test_unknown_loss_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'focal_dice'") as info:
        lossplug.get("focal_dice", framework="torch")
    assert all(name in str(info.value) for name in lossplug.available())
    assert lossplug.available() == list(REGISTRY)


def test_unknown_framework():
    with pytest.raises(ValueError, match="unknown framework 'jax'.*numpy, torch, keras"):
        lossplug.get("mse", framework="jax")
