"""Bad inputs raise a ``ValueError`` naming the problem, eagerly; bad parameters at construction."""

from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import call

import lossplug
import lossplug.keras as lk

pytestmark = pytest.mark.keras

PROBS = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])


@pytest.mark.parametrize(
    "loss, y_true, y_pred, match",
    [
        (lk.MSELoss(), np.zeros((2, 3)), np.zeros((2, 4)),
         r"y_pred has shape \(2, 4\) and y_true has shape \(2, 3\)"),
        (lk.BCELoss(), np.zeros((3, 2)), np.zeros((2, 3)), "never broadcasts"),
        (lk.CategoricalCELoss(), np.eye(3)[:2, :2], PROBS, "y_true must have shape"),
        (lk.SparseCategoricalCELoss(), np.array([0, 1, 2]), PROBS, r"y_pred without class axis"),
        (lk.KLDivLoss(), PROBS[:1], PROBS, "y_true has shape"),
        (lk.DiceLoss(), np.zeros((2, 4)), PROBS, "or the label map"),
        (lk.SparseCategoricalCELoss(class_weights=[1.0, 2.0]), np.array([0, 1]), PROBS,
         "class_weights has 2 entries but y_pred has 3 classes"),
    ],
    ids=["mse", "bce", "cce", "sparse", "kl", "dice", "class-weights"],
)
def test_shape_mismatch(loss, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        call(loss, y_true, y_pred)


@pytest.mark.parametrize(
    "loss, labels, match",
    [
        (lk.SparseCategoricalCELoss(), [0, 3], r"label 3 is out of range.*\[0, 2\]"),
        (lk.SparseCategoricalCELoss(), [-1, 0], "label -1 is out of range"),
        (lk.SparseCategoricalCELoss(ignore_index=-1), [5, -1], r"label 5 .*or equal ignore_index=-1"),
        (lk.DiceLoss(from_logits=True), [0, 4], "label 4 is out of range"),
        (lk.SparseCategoricalCELoss(), [0.5, 1.0], "labels in y_true must be integers"),
    ],
    ids=["too-large", "negative", "with-ignore", "dice-label-map", "non-integer"],
)
def test_label_out_of_range(loss, labels, match):
    with pytest.raises(ValueError, match=match):
        call(loss, np.array(labels), PROBS)


@pytest.mark.parametrize(
    "loss, y_true, y_pred, match",
    [
        (lk.BCELoss(), [[0.0, 1.0]], [[0.5, 1.5]], r"probabilities, from_logits=False.*\[0, 1\]"),
        (lk.WeightedBCELoss(pos_weight=2.0), [[0.0, 1.0]], [[-0.1, 0.5]], "found values from -0.1"),
        (lk.CategoricalCELoss(), [[0.0, 1.0]], [[1.2, -0.2]], "y_pred .*probabilities"),
        (lk.KLDivLoss(), [[0.5, 0.5]], [[1.5, -0.5]], "y_pred .*probabilities"),
        (lk.KLDivLoss(log_input=True), [[0.5, 0.5]], [[0.1, -1.0]], r"log-probabilities.*\(-inf, 0\]"),
        (lk.DiceLoss(), [[0.0, 1.0]], [[0.5, 1.01]], "y_pred .*probabilities"),
        (lk.BCELoss(from_logits=True), [[0.0, 2.0]], [[0.5, 3.0]], r"y_true \(targets\) must lie in"),
        (lk.CategoricalCELoss(), [[-1.0, 1.0]], [[0.5, 0.5]], r"y_true \(targets\)"),
    ],
    ids=["bce", "weighted-bce", "cce", "kl", "kl-log-input", "dice", "bce-targets", "cce-targets"],
)
def test_values_outside_their_range(loss, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        call(loss, np.array(y_true), np.array(y_pred))


def test_value_checks_can_be_turned_off():
    loss = lk.BCELoss()
    with lossplug.value_checks(False):
        value = call(loss, np.array([[1.0]]), np.array([[1.5]]))  # clipped to 1 - eps
    np.testing.assert_allclose(value, -np.log(np.float32(1 - 1e-7)), rtol=1e-3)  # float32 1 - eps
    with pytest.raises(ValueError):
        call(loss, np.array([[1.0]]), np.array([[1.5]]))


@pytest.mark.parametrize(
    "cls, params, match",
    [
        (lk.HuberLoss, {"delta": 0.0}, r"delta=0.0 is invalid; it must be a number > 0"),
        (lk.HuberLoss, {"delta": -1}, "delta"),
        (lk.HuberLoss, {"delta": "1"}, "delta"),
        (lk.BCELoss, {"label_smoothing": 1.5}, r"label_smoothing.*\[0, 1\]"),
        (lk.BCELoss, {"eps": 0.7}, r"eps.*\(0, 0.5\)"),
        (lk.BCELoss, {"from_logits": "yes"}, "from_logits"),
        (lk.MSELoss, {"reduction": "avg"},
         r"reduction='avg'.*'mean', 'sum', 'none', 'sum_over_batch_size', None, 'mean_with_sample_weight'"),
        (lk.MSELoss, {"reduction": "Mean"}, "reduction"),
        (lk.WeightedBCELoss, {"pos_weight": -1.0}, "pos_weight"),
        (lk.CategoricalCELoss, {"class_weights": [-1.0, 2.0]}, "class_weights"),
        (lk.CategoricalCELoss, {"class_weights": [0.0, 0.0]}, "not all 0"),
        (lk.SparseCategoricalCELoss, {"ignore_index": 1.5}, "ignore_index"),
        (lk.SparseCategoricalCELoss, {"axis": "last"}, "axis"),
        (lk.DiceLoss, {"class_weights": [1.0, 2.0]}, "class_weights needs per_class=True"),
        (lk.DiceLoss, {"aggregation": "global"}, "aggregation"),
        (lk.DiceLoss, {"activation": "relu"}, "activation"),
        (lk.DiceLoss, {"smooth": -1e-5}, "smooth"),
        (lk.KLDivLoss, {"from_logits": True, "log_input": True}, "exclude each other"),
        (lk.MSELoss, {"delta": 1.0}, r"unknown parameter\(s\) delta; its parameters are: reduction"),
    ],
)
def test_bad_parameters_fail_at_construction(cls, params, match):
    with pytest.raises(lossplug.LossParameterError, match=match) as info:
        cls(**params)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_sync_dist_is_rejected_in_keras():
    with pytest.raises(lossplug.LossParameterError, match="sync_dist is for torch.distributed"):
        lk.DiceLoss(sync_dist=True, aggregation="batch")
    with pytest.raises(lossplug.LossParameterError, match='sync_dist=True needs aggregation="batch"'):
        lk.DiceLoss(sync_dist=True)
