"""User-style subclasses: a focal BCE through ``terms`` and a Dice with its own ``score``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import call

import lossplug.keras as lk

pytestmark = pytest.mark.keras


@keras.saving.register_keras_serializable(package="my_project")
class FocalBCELoss(lk.BCELoss):
    """Binary focal loss: BCE terms scaled by (1 - p_t)^gamma, as a user would write it."""

    def __init__(self, *, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma

    def terms(self, y_true, y_pred):
        loss, weight = super().terms(y_true, y_pred)
        ops = keras.ops
        p = ops.sigmoid(y_pred) if self.from_logits else ops.clip(y_pred, self.eps, 1 - self.eps)
        p_t = y_true * p + (1 - y_true) * (1 - p)
        return loss * ops.power(1 - p_t, self.gamma), weight

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="my_project")
class PlainRatioDice(lk.DiceLoss):
    """Dice whose smoothing term sits in the denominator only: 1 - 2I / (D + s)."""

    def score(self, intersection, denominator):
        return 2.0 * intersection / (denominator + self.smooth)


def test_focal_values_by_hand():
    y, p = np.array([[1.0, 0.0, 1.0]]), np.array([[0.9, 0.2, 0.4]])
    p_t = np.array([0.9, 0.8, 0.4])
    expected = np.mean(-((1 - p_t) ** 2) * np.log(p_t))
    np.testing.assert_allclose(call(FocalBCELoss(gamma=2.0), y, p), expected, rtol=1e-5)
    # gamma = 0 is plain BCE; logits give the same as their sigmoid probabilities
    np.testing.assert_allclose(call(FocalBCELoss(gamma=0.0), y, p), call(lk.BCELoss(), y, p), rtol=1e-6)
    logits = np.log(p / (1 - p))
    np.testing.assert_allclose(call(FocalBCELoss(from_logits=True), y, logits), expected, rtol=1e-5)


def test_focal_registration_and_config():
    assert keras.saving.get_registered_name(FocalBCELoss) == "my_project>FocalBCELoss"
    loss = FocalBCELoss(gamma=1.5, from_logits=True, label_smoothing=0.1)
    config = loss.get_config()
    assert config["gamma"] == 1.5 and config["from_logits"] is True and config["label_smoothing"] == 0.1
    again = FocalBCELoss.from_config(config)
    assert again.gamma == 1.5 and again.params() == loss.params()


def _separable(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 2)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:] > 0).astype("float32")
    return x, y


def test_focal_trains_and_round_trips(tmp_path):
    x, y = _separable()
    # zero weights: every p starts at 0.5, a focal loss of 0.25 log 2
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=FocalBCELoss(gamma=2.0, from_logits=True))
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0).history["loss"]
    assert history[0] == pytest.approx(0.25 * np.log(2), rel=1e-5)
    assert history[-1] < 0.7 * history[0]

    path = tmp_path / "focal.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # registered: no custom_objects
    assert type(loaded.loss) is FocalBCELoss and loaded.loss.gamma == 2.0 and loaded.loss.from_logits
    logits = np.asarray(keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(call(loaded.loss, y, logits), call(model.loss, y, logits), rtol=1e-6)
    np.testing.assert_allclose(
        model.evaluate(x, y, verbose=0), loaded.evaluate(x, y, verbose=0), rtol=1e-5
    )


def test_dice_score_override_matches_keras_dice():
    # keras.losses.Dice is 1 - 2I / (sum y + sum p + 1e-7): this subclass with smooth=1e-7
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(3, 4, 4, 2)).astype("float32")
    p = rng.uniform(size=(3, 4, 4, 2))
    ours = PlainRatioDice(smooth=1e-7, squared=False)
    theirs = keras.losses.Dice(axis=(1, 2, 3))
    np.testing.assert_allclose(call(ours, y, p), float(keras.ops.convert_to_numpy(theirs(y, p))), rtol=1e-6)
    # and it is not the base class's rule, (2I + s) / (D + s), once s is large
    big = PlainRatioDice(smooth=5.0, squared=False)
    assert abs(call(big, y, p) - call(lk.DiceLoss(smooth=5.0, squared=False), y, p)) > 1e-2


def test_dice_subclass_fits_and_round_trips(tmp_path):
    x = np.random.default_rng(1).normal(size=(8, 4, 4, 2)).astype("float32")
    labels = (x[..., 0] > 0).astype("int32")  # a label map the model can learn
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 1)])
    loss = PlainRatioDice(from_logits=True, smooth=1.0, per_class=True)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    history = model.fit(x, labels, batch_size=8, epochs=5, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]

    path = tmp_path / "dice.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is PlainRatioDice and loaded.loss.params() == loss.params()
