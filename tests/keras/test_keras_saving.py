"""Registration, ``get_config``/``from_config``, and ``model.save`` -> ``load_model`` round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import CLASSES, NAMES, NON_DEFAULT, call, tiny_data, tiny_model

import lossplug
import lossplug.keras as lk
from lossplug._spec import REGISTRY

pytestmark = pytest.mark.keras

@pytest.mark.parametrize("name", NAMES)
def test_registered_under_lossplug(name):
    cls = CLASSES[name]
    assert keras.saving.get_registered_name(cls) == f"lossplug>{cls.__name__}"
    assert keras.saving.get_registered_object(f"lossplug>{cls.__name__}") is cls
    assert isinstance(cls(), keras.losses.Loss)


@pytest.mark.parametrize("name", NAMES)
def test_get_config_lists_every_hyperparameter_and_round_trips(name):
    cls = CLASSES[name]
    config = cls().get_config()
    assert {p.name for p in REGISTRY[name].params} | {"name"} <= set(config)
    assert {k: config[k] for k in REGISTRY[name].defaults} == REGISTRY[name].defaults

    loss = cls(**NON_DEFAULT[name])
    config = loss.get_config()
    for key, value in NON_DEFAULT[name].items():
        assert config[key] == value, key
    again = cls.from_config(config)
    assert type(again) is cls and again.params() == loss.params() and again.name == loss.name
    # and through Keras's own serialisation, with no custom_objects
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.params() == loss.params()


def test_dtype_is_kept_in_config():
    loss = lk.HuberLoss(delta=0.3, dtype="float64")
    assert loss.get_config()["dtype"] == "float64"
    assert lk.HuberLoss.from_config(loss.get_config()).dtype == "float64"


@pytest.mark.parametrize("name", NAMES)
def test_compiled_model_saves_and_loads_without_custom_objects(name, tmp_path):
    params = NON_DEFAULT[name]
    loss = CLASSES[name](**params)
    model = tiny_model(name, params)
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.params() == loss.params() and loaded.loss.name == loss.name
    x, y = tiny_data(name)
    y_pred = np.asarray(keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(loaded(x))), y_pred, rtol=1e-6)
    np.testing.assert_allclose(call(loaded.loss, y, y_pred), call(loss, y, y_pred), rtol=1e-6)


def test_get_keras_builds_the_registered_class():
    loss = lossplug.get("huber", framework="keras", delta=0.3)
    assert type(loss) is lk.HuberLoss and loss.delta == 0.3
