"""MSE, MAE and Huber: elementwise, one value per input element."""

from __future__ import annotations


def mse(xp, y_pred, y_true):
    r"""Squared error :math:`(\hat y - y)^2`."""
    return xp.square(y_pred - y_true), None


def mae(xp, y_pred, y_true):
    r"""Absolute error :math:`|\hat y - y|`."""
    return xp.abs(y_pred - y_true), None


def huber(xp, y_pred, y_true, *, delta):
    r"""Huber: :math:`\tfrac12 q^2 + \delta(|e| - q)` with :math:`q = \min(|e|, \delta)`.

    Written with ``min`` rather than a branch, so the gradient is exact on both sides of delta.
    """
    err = xp.abs(y_pred - y_true)
    q = xp.minimum(err, delta)
    return 0.5 * xp.square(q) + delta * (err - q), None
