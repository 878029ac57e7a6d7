"""Kullback-Leibler divergence."""

from __future__ import annotations


def kl_div(xp, y_pred, y_true, *, from_logits, log_input, axis, eps):
    r"""KL(p‖q) :math:`\sum_c p_c \log(p_c / q_c)` with :math:`p` = ``y_true``, :math:`q` = ``y_pred``.

    ``q`` may come as probabilities (clipped to :math:`[\epsilon, 1]`), logits (log-softmax) or
    log-probabilities (``log_input``). Terms with :math:`p_c = 0` are 0, as the limit says.
    """
    if from_logits:
        log_q = xp.log_softmax(y_pred, axis)
    elif log_input:
        log_q = y_pred
    else:
        log_q = xp.log(xp.clip(y_pred, eps, 1.0))
    positive = y_true > 0
    safe_p = xp.where(positive, y_true, 1.0 + 0 * y_true)
    terms = xp.where(positive, y_true * (xp.log(safe_p) - log_q), 0 * log_q)
    return xp.sum(terms, axis=axis), None
