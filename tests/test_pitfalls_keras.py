"""The Keras numbers of docs/pitfalls.md and docs/conventions.md, recomputed under this backend.

Runs the Python blocks that mention Keras (see test_pitfalls.py for the claim format) and rebuilds
the Keras columns of the reduction table; run once per KERAS_BACKEND.
"""

from __future__ import annotations

import warnings

import keras
import pytest
from test_pitfalls import find_section, none_inputs, none_table, run_section, section_ids

import lossplug.keras
from lossplug._spec import spec

pytestmark = pytest.mark.keras


@pytest.mark.parametrize(("page", "title"), section_ids(keras=True))
def test_keras_snippet_numbers(page, title):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problems = run_section(find_section(page, title), keras=True, backend=keras.backend.backend())
    assert not problems, f"KERAS_BACKEND={keras.backend.backend()}:\n" + "\n".join(problems)


_NATIVE = {
    "mse": lambda: keras.losses.MeanSquaredError(reduction=None),
    "mae": lambda: keras.losses.MeanAbsoluteError(reduction=None),
    "huber": lambda: keras.losses.Huber(reduction=None),
    "bce": lambda: keras.losses.BinaryCrossentropy(reduction=None),
    "weighted_bce": lambda: keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=0.75, gamma=0.0, reduction=None
    ),
    "categorical_ce": lambda: keras.losses.CategoricalCrossentropy(reduction=None),
    "sparse_categorical_ce": lambda: keras.losses.SparseCategoricalCrossentropy(reduction=None),
    "dice": lambda: keras.losses.Dice(reduction=None),
    "kl_div": lambda: keras.losses.KLDivergence(reduction=None),
}


@pytest.mark.parametrize("row", none_table(), ids=lambda r: r["name"] + "-batch" * bool(r["params"]))
def test_none_table_keras(row):
    name = row["name"]
    y_pred, y_true = none_inputs(name, row["last_input"], -1)
    ours = getattr(lossplug.keras, spec(name).class_name)(reduction="none", **row["params"])
    assert tuple(ours(y_true, y_pred).shape) == row["lossplug.keras"]
    assert tuple(_NATIVE[name]()(y_true, y_pred).shape) == row["keras.losses"]
