"""CombinedLoss in Keras: the weighted sum, a History/CSV entry per term (eager and under XLA),
save/load without custom_objects, and the shipped Hydra presets."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
from keras_helpers import BACKEND, call, reference

import lossplug
import lossplug.keras as lk

pytestmark = pytest.mark.keras

COMPILED = {"jit_compile": True} if BACKEND in ("tensorflow", "jax") else {"jit_compile": False}


def _data(n=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4, 4, 2)).astype("float32"), rng.integers(0, c, size=(n, 4, 4))


def _model(c=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(c, 1)])


def _dice_ce(weight=0.5):
    return lk.CombinedLoss(terms={"dice": lk.DiceLoss(from_logits=True),
                                  "ce": {"name": "sparse_categorical_ce", "from_logits": True}},
                           weights={"ce": weight})


def test_value_is_the_weighted_sum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 5, 3)) * 2
    y = rng.integers(0, 3, size=(2, 4, 5))
    loss = lossplug.get("combined", framework="keras", terms={
        "tversky": {"name": "tversky", "from_logits": True, "alpha": 0.3, "beta": 0.7},
        "ce": lk.SparseCategoricalCELoss(from_logits=True)}, weights={"tversky": 2.0, "ce": 0.5})
    expected = 2.0 * reference("tversky", y, x, from_logits=True, alpha=0.3, beta=0.7) + 0.5 * reference(
        "sparse_categorical_ce", y, x, from_logits=True)
    np.testing.assert_allclose(call(loss, y, x.astype("float32")), expected, rtol=2e-5)


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_fit_logs_every_term_in_history_and_csv(mode, tmp_path):
    x, y = _data()
    loss = _dice_ce(0.5)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, metrics=loss.term_metrics(),
                  **({"run_eagerly": True} if mode == "eager" else COMPILED))
    log = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, validation_data=(x, y),
                        callbacks=[keras.callbacks.CSVLogger(str(log))])
    h = history.history
    for key in ("dice_loss", "ce_loss", "val_dice_loss", "val_ce_loss"):
        assert len(h[key]) == 2 and np.all(np.isfinite(h[key])), key
    # the terms add up to the loss Keras logs (the same forward pass in each step)
    np.testing.assert_allclose(h["loss"], np.add(h["dice_loss"], 0.5 * np.asarray(h["ce_loss"])), rtol=1e-5)
    np.testing.assert_allclose(h["val_loss"], np.add(h["val_dice_loss"], 0.5 * np.asarray(h["val_ce_loss"])),
                               rtol=1e-5)
    # and the validation terms are the terms of the trained model
    p = keras.ops.convert_to_numpy(model.predict(x, verbose=0)).astype(np.float64)
    expected = reference("sparse_categorical_ce", y, p, from_logits=True)
    np.testing.assert_allclose(h["val_ce_loss"][-1], expected, rtol=1e-4)
    rows = list(csv.DictReader(log.open()))
    assert {"dice_loss", "ce_loss", "val_dice_loss", "val_ce_loss"} <= set(rows[0])


def test_saves_and_loads_with_the_model_without_custom_objects(tmp_path):
    x, y = _data()
    loss = _dice_ce(0.25)
    model = _model()
    model.compile(optimizer="adam", loss=loss, metrics=loss.term_metrics(), **COMPILED)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored.loss) is lk.CombinedLoss and restored.loss.weights == {"dice": 1.0, "ce": 0.25}
    assert type(restored.loss.terms["dice"]) is lk.DiceLoss
    assert restored.loss.terms["ce"].params() == lk.SparseCategoricalCELoss(from_logits=True).params()
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    got = restored.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "dice_loss", "ce_loss"} <= set(got)
    for key in ("loss", "dice_loss", "ce_loss"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is lk.CombinedLoss and list(again.terms) == ["dice", "ce"]


def test_named_errors():
    with pytest.raises(ValueError, match="unknown term"):
        lk.CombinedLoss(terms={"dice": lk.DiceLoss()}, weights={"bce": 1.0})
    with pytest.raises(ValueError, match="term 'dice' is DiceLoss"):
        import lossplug.torch as lt  # a torch module is not a Keras loss

        lk.CombinedLoss(terms={"dice": lt.DiceLoss()})


@pytest.mark.parametrize("preset,kind", [("dice_ce", "labels"), ("dice_bce", "masks")])
def test_presets_build_for_keras(preset, kind, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    (tmp_path / "config.yaml").write_text(f"defaults:\n  - loss: {preset}\n  - _self_\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = compose(config_name="config", overrides=["loss.terms.dice.smooth=0.5"])
    loss = instantiate(cfg.loss, framework="keras")
    assert isinstance(loss, lk.CombinedLoss) and loss.terms["dice"].smooth == 0.5
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 4, 3 if kind == "labels" else 1))
    if kind == "labels":
        y = rng.integers(0, 3, size=(2, 4, 4))
        expected = reference("dice", y, x, from_logits=True, smooth=0.5) + reference(
            "sparse_categorical_ce", y, x, from_logits=True)
    else:
        y = (rng.uniform(size=x.shape) < 0.5).astype("float32")
        expected = reference("dice", y, x, from_logits=True, smooth=0.5) + reference(
            "bce", y, x, from_logits=True)
    np.testing.assert_allclose(call(loss, y, x.astype("float32")), expected, rtol=2e-5)
