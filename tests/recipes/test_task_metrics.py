"""The NumPy metrics of recipes.tasks against scikit-learn and torchmetrics, and the data builders."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, r2_score, recall_score

from recipes import data
from recipes.tasks import loss_targets, metrics


def _split(y_test, n_outputs, **kw):
    return data.Split(np.zeros((1, 1)), np.zeros(1), np.zeros((len(y_test), 1)), y_test, n_outputs, **kw)


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    got = metrics("regression", _split(y, 1), pred)
    assert got["r2"] == pytest.approx(r2_score(y, pred))
    assert got["mse"] == pytest.approx(np.mean((y - pred) ** 2))


def test_count_metrics_match_sklearn_and_torchmetrics():
    import torch
    from sklearn.metrics import d2_tweedie_score, mean_absolute_error, mean_poisson_deviance
    from torchmetrics import TweedieDevianceScore

    from recipes.lightning_path import PoissonD2

    rng = np.random.default_rng(3)
    y = rng.poisson(4.0, size=(60, 1)).astype(np.float32)  # zeros among them
    log_rate = np.log(4.0) + 0.3 * rng.normal(size=(60, 1))
    got = metrics("counts", _split(y, 1), log_rate)
    rate = np.exp(log_rate)
    assert got["poisson_deviance"] == pytest.approx(mean_poisson_deviance(y, rate), rel=1e-9)
    assert got["d2"] == pytest.approx(d2_tweedie_score(y, rate, power=1), rel=1e-9)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, rate), rel=1e-9)
    assert got["r2"] == pytest.approx(r2_score(y, rate), rel=1e-9)
    d2 = PoissonD2()
    for part in np.array_split(np.arange(60), 3):  # in batches, as validation feeds it
        d2.update(torch.from_numpy(rate[part].ravel()), torch.from_numpy(y[part].ravel()))
    assert float(d2.compute()) == pytest.approx(got["d2"], rel=1e-9)
    deviance = TweedieDevianceScore(power=1.0)(torch.from_numpy(rate.ravel()), torch.from_numpy(y.ravel()))
    assert float(deviance) == pytest.approx(got["poisson_deviance"], rel=1e-5)


def test_diabetes_counts_are_the_raw_target_and_poisson_regressor_the_reference():
    from sklearn.linear_model import PoissonRegressor
    from sklearn.metrics import d2_tweedie_score

    split, standard = data.diabetes(target="counts"), data.diabetes()
    np.testing.assert_array_equal(split.x_train, standard.x_train)
    assert split.y_train.min() >= 25 and split.y_train.max() <= 346
    assert np.all(split.y_train == np.round(split.y_train))  # integers
    glm = PoissonRegressor(alpha=0.0, max_iter=1000).fit(split.x_train, split.y_train.ravel())
    expected = d2_tweedie_score(split.y_test.ravel(), glm.predict(split.x_test), power=1)
    assert split.info["poisson_regressor_d2"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="counts"):
        data.diabetes(target="raw")


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random((80, 1)) < 0.3).astype(np.float32)
    logits = rng.normal(size=(80, 1)) + 2 * y
    got = metrics("binary", _split(y, 1), logits)
    pred = logits.ravel() > 0
    assert got["recall"] == pytest.approx(recall_score(y.ravel(), pred))
    assert got["precision"] == pytest.approx(precision_score(y.ravel(), pred))
    assert got["f1"] == pytest.approx(f1_score(y.ravel(), pred))
    assert got["accuracy"] == pytest.approx(accuracy_score(y.ravel(), pred))


def test_segmentation_dice_matches_torchmetrics_f1():
    import torch
    from torchmetrics.classification import MulticlassF1Score

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=(4, 8, 8))
    logits = rng.normal(size=(4, 8, 8, 3)) + 1.5 * np.eye(3)[labels]
    got = metrics("segmentation", _split(labels, 3, info={"classes": ["bg", "circle", "square"]}), logits)
    f1 = MulticlassF1Score(3, average=None)(torch.from_numpy(logits.argmax(-1)).reshape(-1),
                                          torch.from_numpy(labels).reshape(-1))
    assert got["dice_circle"] == pytest.approx(float(f1[1]), rel=1e-6)
    assert got["dice"] == pytest.approx(float(f1[1:].mean()), rel=1e-6)


def test_digits_one_vs_rest_is_imbalanced_and_seeded():
    a, b = data.digits_one_vs_rest(seed=0), data.digits_one_vs_rest(seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert 0.01 < a.info["positive_fraction_train"] < 0.05
    assert a.y_train.shape[1] == 1 and a.y_test.sum() > 5


def test_diabetes_reference_is_sklearn_linear_regression():
    from sklearn.linear_model import LinearRegression

    split = data.diabetes()
    fitted = LinearRegression().fit(split.x_train, split.y_train)
    assert split.info["linear_regression_r2"] == pytest.approx(fitted.score(split.x_test, split.y_test))
    assert abs(split.y_train.mean()) < 1e-5 and split.x_train.shape == (331, 10)


def test_distillation_targets_are_probabilities():
    split = data.digits_distillation(max_samples=100)
    soft, _ = loss_targets(split, "soft")
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert split.info["teacher_accuracy"] > 0.9


def test_shapes_are_seeded_and_labelled():
    a = data.shapes(n_train=4, n_test=2, multiclass=True, seed=3)
    b = data.shapes(n_train=4, n_test=2, multiclass=True, seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (4, 32, 32, 1) and set(np.unique(a.y_train)) <= {0, 1, 2}
    binary = data.shapes(n_train=4, n_test=2, seed=3)
    np.testing.assert_array_equal(binary.y_train[..., 0], (a.y_train > 0).astype(np.float32))
    # the shapes are brighter than the background, on average by their intensity of 1
    assert a.x_train[a.y_train > 0].mean() - a.x_train[a.y_train == 0].mean() == pytest.approx(1, abs=0.1)


def test_onehot_targets():
    split = data.digits(max_samples=20)
    onehot, _ = loss_targets(split, "onehot")
    np.testing.assert_array_equal(onehot.argmax(1), split.y_train)
