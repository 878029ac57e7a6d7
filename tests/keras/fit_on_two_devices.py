"""Fit tiny models with lossplug losses on one device and on two; print both histories as JSON.

Run as a script, in its own process, because the two devices must be configured before the
framework initialises its devices:

    python fit_on_two_devices.py mirrored   # KERAS_BACKEND=tensorflow: MirroredStrategy on 2 CPUs
    python fit_on_two_devices.py jax        # KERAS_BACKEND=jax: keras.distribution.DataParallel

Each case trains 2 SGD steps on the same global batch of 8 from the same initial weights, once on
one device and once split over two; the output holds the per-step losses and the final weights.
"""

from __future__ import annotations

import json
import os
import sys

MODE = sys.argv[1]
if MODE == "mirrored":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
elif MODE == "jax":
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    os.environ["JAX_ENABLE_X64"] = "1"
else:
    raise SystemExit(f"unknown mode {MODE!r}")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossplug.keras as lk  # noqa: E402

keras.backend.set_floatx("float64")
BATCH = 8
rng = np.random.default_rng(0)
x_reg, y_reg = rng.normal(size=(BATCH, 3)), rng.normal(size=(BATCH, 1))
# labels unevenly spread over the two halves, so per-replica class-weight totals differ
x_cls, y_cls = rng.normal(size=(BATCH, 3)), np.array([0, 0, 0, 0, 0, 1, 2, 1])
x_seg = rng.normal(size=(BATCH, 6, 2))
y_seg = (rng.random(size=(BATCH, 6, 1)) > 0.5).astype("float64")

CASES = {
    "mse_mean": (lambda: lk.MSELoss(), x_reg, y_reg, 1),
    "mse_sum": (lambda: lk.MSELoss(reduction="sum"), x_reg, y_reg, 1),
    "sparse_ce_class_weights": (
        lambda: lk.SparseCategoricalCELoss(from_logits=True, class_weights=[1.0, 3.0, 0.5]),
        x_cls, y_cls, 3,
    ),
    "dice_batch": (lambda: lk.DiceLoss(from_logits=True, aggregation="batch"), x_seg, y_seg, 1),
}


def fit(make_loss, x, y, units, scope):
    with scope:
        inputs = keras.Input(shape=x.shape[1:])
        dense = keras.layers.Dense(units, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
        model = keras.Model(inputs, dense(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=make_loss())
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    return {"loss": history.history["loss"], "weights": [w.tolist() for w in model.get_weights()]}


def main():
    import contextlib

    out = {}
    if MODE == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        out["devices"] = strategy.num_replicas_in_sync
        for name, (make_loss, x, y, units) in CASES.items():
            single = fit(make_loss, x, y, units, contextlib.nullcontext())
            out[name] = {"single": single, "two": fit(make_loss, x, y, units, strategy.scope())}
    else:
        import jax

        devices = jax.devices()[:2]
        out["devices"] = len(devices)
        single = {name: fit(*case, contextlib.nullcontext()) for name, case in CASES.items()}
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        for name, case in CASES.items():
            out[name] = {"single": single[name], "two": fit(*case, contextlib.nullcontext())}
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
