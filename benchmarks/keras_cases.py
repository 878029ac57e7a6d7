"""The Keras benchmarks: lossplug's Keras losses against the Keras built-ins, both under XLA.

Keras fixes its backend per process, so ``python -m benchmarks`` runs this module once per backend
in a subprocess (``KERAS_BACKEND=tensorflow`` or ``jax``) and merges the JSON rows it prints::

    KERAS_BACKEND=jax python -m benchmarks.keras_cases [--quick]

Forward + backward (the gradient with respect to ``y_pred``) is one compiled function:
``tf.function(jit_compile=True)`` around a ``GradientTape`` on TensorFlow, ``jax.jit`` of
``jax.value_and_grad`` on JAX. Under XLA lossplug's value checks cannot raise: they make the loss
NaN on bad input (``core.poison``: a select inside the loss's own loop where the checked input
has the loss's shape or reduces to it along the class axis, else one more pass for the batch);
``lossplug (checks off)`` is the same loss traced inside ``lossplug.value_checks(False)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np


def _inputs(kind, n, rng, classes=10):
    if kind == "regression":
        return rng.standard_normal((n // 100, 100)), rng.standard_normal((n // 100, 100))
    if kind == "probabilities":
        return rng.random((n // 100, 100)), rng.random((n // 100, 100))
    if kind == "logits":
        return 2 * rng.standard_normal((n // 100, 100)), rng.random((n // 100, 100))
    if kind == "binary_logits":
        return 2 * rng.standard_normal((n // 100, 100)), (rng.random((n // 100, 100)) > 0.5).astype(float)
    if kind == "rates":
        return 0.1 + 4 * rng.random((n // 100, 100)), rng.poisson(2.0, (n // 100, 100)).astype(float)
    x = 2 * rng.standard_normal((n // classes, classes))
    if kind == "labels":
        return x, rng.integers(0, classes, n // classes)
    soft = np.exp(rng.standard_normal((n // classes, classes)))
    if kind == "soft_probs":
        x = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    return x, soft / soft.sum(-1, keepdims=True)


def _segmentation(n, rng, classes=4):
    side = int(math.sqrt(n // (8 * classes)))
    p = rng.random((8, side, side, classes))
    p = p / p.sum(-1, keepdims=True)
    y = np.eye(classes)[rng.integers(0, classes, (8, side, side))]
    return p, y


def cases(keras):
    import lossplug.keras as lk

    L = keras.losses
    return [
        ("mse", "regression", lk.MSELoss(), L.MeanSquaredError()),
        ("mae", "regression", lk.MAELoss(), L.MeanAbsoluteError()),
        ("huber", "regression", lk.HuberLoss(), L.Huber()),
        ("bce (probabilities)", "probabilities", lk.BCELoss(), L.BinaryCrossentropy()),
        ("bce (logits)", "logits", lk.BCELoss(from_logits=True), L.BinaryCrossentropy(from_logits=True)),
        ("categorical_ce (logits)", "soft", lk.CategoricalCELoss(from_logits=True),
         L.CategoricalCrossentropy(from_logits=True)),
        ("sparse_categorical_ce (logits)", "labels", lk.SparseCategoricalCELoss(from_logits=True),
         L.SparseCategoricalCrossentropy(from_logits=True)),
        ("kl_div (probabilities)", "soft_probs", lk.KLDivLoss(), L.KLDivergence()),
        ("dice (batch, plain denominator)", "segmentation",
         lk.DiceLoss(squared=False, aggregation="batch", smooth=1e-7), L.Dice()),
        *beyond_the_nine(keras),
    ]


def beyond_the_nine(keras):
    """The new losses against the Keras built-ins; each lossplug loss is ``lossplug.port`` of its
    built-in (Keras's conventions: Tversky's swapped alpha/beta, cosine as -cos, ...)."""
    import lossplug

    L = keras.losses
    builtins = [
        ("focal (logits, class balancing)", "binary_logits",
         L.BinaryFocalCrossentropy(apply_class_balancing=True, from_logits=True)),
        ("categorical_focal (logits)", "soft", L.CategoricalFocalCrossentropy(from_logits=True)),
        ("tversky (a 0.3 b 0.7)", "segmentation", L.Tversky(alpha=0.3, beta=0.7)),
        ("log_cosh", "regression", L.LogCosh()),
        ("poisson", "rates", L.Poisson()),
        ("cosine_similarity", "regression", L.CosineSimilarity()),
        ("hinge", "binary_logits", L.Hinge()),
        ("hinge (squared)", "binary_logits", L.SquaredHinge()),
    ]
    return [(name, kind, lossplug.port(b, framework="keras"), b) for name, kind, b in builtins]


def _compiled(backend, loss, y_true, y_pred):
    """A no-argument callable running forward + backward under XLA; returns the loss as a float."""
    if backend == "tensorflow":
        import tensorflow as tf

        yt, yp = tf.constant(y_true), tf.constant(y_pred)

        @tf.function(jit_compile=True)
        def step(yt, yp):
            with tf.GradientTape() as tape:
                tape.watch(yp)
                value = loss(yt, yp)
            return value, tape.gradient(value, yp)

        return lambda: float(step(yt, yp)[0].numpy())
    import jax
    import jax.numpy as jnp

    yt, yp = jnp.asarray(y_true), jnp.asarray(y_pred)
    step = jax.jit(jax.value_and_grad(lambda yp, yt: loss(yt, yp)))
    return lambda: float(jax.block_until_ready(step(yp, yt))[0])


def rows(quick: bool) -> list[dict]:
    import keras

    from benchmarks._timing import EXTEND_S, interleaved
    from lossplug import value_checks

    backend = keras.backend.backend()
    # the grid: every loss at 1e5 and 4e6 elements; the class losses also at C = 2, 64, 1000
    sizes = [10_000] if quick else [100_000, 4_000_000]
    class_counts = [10] if quick else [2, 10, 64, 1000]
    rounds, budget = (3, 0.5) if quick else (40, 6.0)
    rng = np.random.default_rng(0)
    grid = []
    for n in sizes:
        for name, kind, ours, builtin in cases(keras):
            counts = class_counts if kind in ("labels", "soft", "soft_probs") and n == sizes[-1] else [10]
            grid += [(n, c, name, kind, ours, builtin) for c in counts]
    new_losses = {name for name, *_ in beyond_the_nine(keras)}
    out = []
    for n, classes, name, kind, ours, builtin in grid:
        x, y = _segmentation(n, rng) if kind == "segmentation" else _inputs(kind, n, rng, classes)
        x = x.astype("float32")
        y = y.astype("int32" if kind == "labels" else "float32")
        cands = {"lossplug": _compiled(backend, ours, y, x), "keras": _compiled(backend, builtin, y, x)}
        values = {k: f() for k, f in cands.items()}  # also compiles
        with value_checks(False):  # decided when traced: the first call
            cands["lossplug (checks off)"] = _compiled(backend, ours, y, x)
            values["lossplug (checks off)"] = cands["lossplug (checks off)"]()
        timings = interleaved(cands, rounds=rounds, budget_s=budget, extend_s=0 if quick else EXTEND_S)
        for impl, t in timings.items():
            out.append({
                "section": f"keras-{backend}", "loss": name, "shape": "x".join(map(str, x.shape)),
                "numel": int(x.size), "impl": impl, "best_ms": 1e3 * t.best,
                "median_ms": 1e3 * t.median, "rounds": t.rounds,
                "ratio": t.best / timings["keras"].best,
                "median_ratio": t.median / timings["keras"].median, "baseline": "keras",
                "cpu_ms": 1e3 * t.best_cpu, "cpu_ratio": t.best_cpu / timings["keras"].best_cpu,
                "value": values[impl],
                "same_value": math.isclose(values[impl], values["keras"], rel_tol=1e-3, abs_tol=1e-5),
                "beyond_the_nine": name in new_losses,
            })
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = rows(args.quick)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
