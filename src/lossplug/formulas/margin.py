"""Log-cosh, Poisson, cosine similarity and hinge: regression, count and margin losses."""

from __future__ import annotations

import math

_LOG2 = math.log(2.0)


def log_cosh(xp, y_pred, y_true):
    r"""Log-cosh :math:`\log\cosh(e)`, :math:`e = \hat y - y`, elementwise.

    Computed as :math:`|e| + \log(1 + e^{-2|e|}) - \log 2`: no overflow of :math:`\cosh` for
    large errors (the exponent is never positive, so no softplus branch is needed); the gradient
    is :math:`\tanh(e)` everywhere.
    """
    a = xp.abs(y_pred - y_true)
    return a + xp.log1p(xp.exp(-2.0 * a)) - _LOG2, None


def poisson(xp, y_pred, y_true, *, log_input, eps):
    r"""Poisson negative log-likelihood (less :math:`\log y!`): :math:`\hat y - y\log(\hat y + \epsilon)`.

    ``log_input=True`` takes :math:`\hat y` as the log-rate: :math:`e^{\hat y} - y\hat y`.
    """
    if log_input:
        return xp.exp(y_pred) - y_true * y_pred, None
    return y_pred - y_true * xp.log(y_pred + eps), None


def cosine_similarity(xp, y_pred, y_true, *, axis, eps, numerics="lossplug"):
    r"""One minus the cosine along ``axis``, per position.

    :math:`1 - \hat y\cdot y / (\max(\|\hat y\|, \epsilon)\max(\|y\|, \epsilon))`; the norms are
    :math:`\sqrt{\max(\sum x^2, \epsilon^2)}`: a zero vector gives a finite value and gradient.
    ``numerics="keras"``: Keras's ``CosineSimilarity``, :math:`-\cos` (1 less, never positive).
    """
    dot = xp.sum(y_pred * y_true, axis=axis)
    if numerics == "keras":
        return -dot / (_norm(xp, y_pred, axis, eps) * _norm(xp, y_true, axis, eps)), None
    return 1.0 - dot / (_norm(xp, y_pred, axis, eps) * _norm(xp, y_true, axis, eps)), None


def _norm(xp, x, axis, eps):
    squares = xp.sum(xp.square(x), axis=axis)
    floor = eps * eps
    return xp.where(squares > floor, squares, 0.0 * squares + floor) ** 0.5


def hinge(xp, y_pred, y_true, *, squared):
    r"""Hinge :math:`\max(0, 1 - t\hat y)`, :math:`t = 2y - 1` for labels 0/1 (labels -1/1 as they are).

    ``squared=True`` squares the margin (Keras's ``SquaredHinge``).
    """
    t = xp.where(y_true == 0, y_true - 1.0, y_true)
    margin = 1.0 - t * y_pred
    margin = xp.where(margin > 0, margin, 0.0 * margin)
    return (xp.square(margin) if squared else margin), None
