"""MSE, MAE and Huber: elementwise, one value per input element."""

from __future__ import annotations


def mse(xp, y_pred, y_true):
    r"""Squared error :math:`(\hat y - y)^2`."""
    return xp.square(y_pred - y_true), None


def mae(xp, y_pred, y_true):
    r"""Absolute error :math:`|\hat y - y|`."""
    return xp.abs(y_pred - y_true), None


def huber(xp, y_pred, y_true, *, delta):
    r"""Huber: :math:`\tfrac12 e^2` where :math:`|e| \le \delta`, else :math:`\delta|e| - \tfrac12\delta^2`.

    The same as :math:`\tfrac12 q^2 + \delta(|e| - q)`, :math:`q = \min(|e|, \delta)`; written as one
    select, which XLA and inductor compile into a single elementwise loop. Both sides give the
    gradient :math:`\delta\,\mathrm{sign}(e)` at :math:`|e| = \delta`.
    """
    err = y_pred - y_true
    abs_err = xp.abs(err)
    return xp.where(abs_err <= delta, 0.5 * xp.square(err), delta * abs_err - 0.5 * delta * delta), None
