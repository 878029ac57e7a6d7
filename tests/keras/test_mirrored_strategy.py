"""lossplug's Keras losses split over two devices give the one-device loss and gradient.

``fit_on_two_devices.py`` trains 2 SGD steps on a global batch of 8, once on one device and once
over two, in a subprocess (the two CPU devices must exist before the framework starts):

- TensorFlow backend: ``tf.distribute.MirroredStrategy`` over 2 logical CPU devices. Keras scales
  each replica's loss by 1/replicas and sums the gradients, which is right for per-sample values;
  Dice with ``aggregation="batch"`` and the class-weighted mean (divided by the sum of the weights)
  need totals over the replicas, which lossplug all-reduces.
- JAX backend: ``keras.distribution.DataParallel`` over 2 host devices (XLA's
  ``--xla_force_host_platform_device_count=2``); the loss sees the global, sharded batch.
- torch backend: Keras has no multi-device distribution there, so these cases are skipped with
  that reason.

Equal per-step losses and equal weights after the steps mean equal values and gradients. The
class-weight labels are spread unevenly over the two halves of the batch, so a mean of per-replica
weighted means differs from the global one (before lossplug all-reduced the totals, MirroredStrategy
gave 1.0791 instead of 1.0035 there, and 0.41807 instead of 0.41928 for the batch Dice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = [pytest.mark.keras, pytest.mark.slow]

BACKEND = keras.backend.backend()
MODES = {"tensorflow": "mirrored", "jax": "jax"}
CASES = ["mse_mean", "mse_sum", "sparse_ce_class_weights", "dice_batch"]
needs_distribution = pytest.mark.skipif(
    BACKEND not in MODES,
    reason=f"Keras offers no multi-device distribution on the {BACKEND} backend "
    "(MirroredStrategy is TensorFlow's, DataParallel is JAX's)",
)


@pytest.fixture(scope="module")
def runs():
    script = Path(__file__).with_name("fit_on_two_devices.py")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, str(script), MODES[BACKEND]], capture_output=True, text=True, env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@needs_distribution
def test_two_devices_are_in_use(runs):
    assert runs["devices"] == 2


@needs_distribution
@pytest.mark.parametrize("case", CASES)
def test_two_device_loss_and_weights_equal_one_device(runs, case):
    single, two = runs[case]["single"], runs[case]["two"]
    np.testing.assert_allclose(two["loss"], single["loss"], rtol=1e-12, atol=0)
    assert len(two["weights"]) == len(single["weights"])
    for w_two, w_one in zip(two["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(w_two, w_one, rtol=0, atol=1e-12)
