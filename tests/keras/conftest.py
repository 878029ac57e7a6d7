"""Keras tests: run once per backend, ``KERAS_BACKEND=<b> pytest -m keras tests/keras``.

When the mark expression selects no Keras test (``pytest -m "not keras"``), this folder is not
collected at all, so that run imports neither Keras nor TensorFlow/JAX.
"""

from __future__ import annotations


def _selects_keras_tests(markexpr: str) -> bool:
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression

        expr = Expression.compile(markexpr)
    except Exception:  # an unfamiliar pytest: collect, and let the marks deselect
        return True
    return any(
        expr.evaluate(lambda name, /, _marks=marks, **kwargs: name in _marks)
        for marks in ({"keras"}, {"keras", "slow"})
    )


def pytest_ignore_collect(collection_path, config):
    if not _selects_keras_tests(config.getoption("markexpr", "")):
        return True
    return None
