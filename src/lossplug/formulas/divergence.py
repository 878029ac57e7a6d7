"""Kullback-Leibler divergence."""

from __future__ import annotations


def kl_div(xp, y_pred, y_true, *, from_logits, log_input, axis, eps, numerics="lossplug"):
    r"""KL(p‖q) :math:`\sum_c p_c \log(p_c / q_c)` with :math:`p` = ``y_true``, :math:`q` = ``y_pred``.

    ``q`` may come as probabilities (clipped to :math:`[\epsilon, 1]`), logits (log-softmax) or
    log-probabilities (``log_input``). Terms with :math:`p_c = 0` are 0, as the limit says.
    ``numerics="keras"`` (probabilities): Keras's ``KLDivergence``, which clips ``p`` to
    :math:`[\epsilon, 1]` too, so its zero terms are :math:`\epsilon\log(\epsilon / q_c)`.
    ``numerics="torch"``: torch's ``KLDivLoss(reduction="batchmean")``, whose mean is the total over
    ``y_pred.shape[0]``: each position weighs 1 / (positions per sample), so the mean is over samples
    of their summed divergence (spatial input), and a 1-D ``y_pred`` of C entries divides by C.
    """
    loss = _kl_terms(xp, y_pred, y_true, from_logits=from_logits, log_input=log_input, axis=axis, eps=eps,
                     numerics=numerics)
    return loss, (batchmean_weight(xp, y_pred, loss) if numerics == "torch" else None)


def batchmean_weight(xp, y_pred, loss):
    """Weights whose total is ``y_pred.shape[0]``: 1 / (positions per sample) at each position of
    ``loss`` (``None`` where that is 1, one value per sample), ``y_pred.shape[0]`` for a scalar."""
    ndim = len(xp.shape(loss))
    if ndim == 1:
        return None
    if ndim == 0:  # 1-D y_pred: torch's batch is its C entries
        return xp.cast_like(xp.sum(xp.where(y_pred == y_pred, 1.0, 1.0)), loss)
    ones = xp.cast_like(xp.where(loss == loss, 1.0, 1.0), loss)  # 1 per value, inf and NaN too
    return ones / xp.sum(ones, axis=tuple(range(1, ndim)), keepdims=True)


def _kl_terms(xp, y_pred, y_true, *, from_logits, log_input, axis, eps, numerics):
    if numerics == "keras" and not (from_logits or log_input):
        p, q = xp.clip(y_true, eps, 1.0), xp.clip(y_pred, eps, 1.0)
        return xp.sum(p * xp.log(p / q), axis=axis)
    if not (from_logits or log_input):
        # one log per term, of max(p, tiny) / q: q is clipped to [eps, 1], so the ratio is at least
        # the smallest normal number, never subnormal, which XLA's CPU code flushes to 0 (log 0 =
        # -inf); a term whose p is 0 is 0 times a finite log, and so is its gradient
        floor = xp.constant(xp.smallest_normal(y_pred), y_true)  # (a Python float may become float32)
        q = xp.clip(y_pred, eps, 1.0)
        return xp.sum(y_true * xp.log(xp.maximum(y_true, floor) / q), axis=axis)
    log_q = xp.log_softmax(y_pred, axis) if from_logits else y_pred
    positive = y_true > 0
    safe_p = xp.where(positive, y_true, 1.0 + 0 * y_true)
    terms = xp.where(positive, y_true * (xp.log(safe_p) - log_q), 0 * log_q)
    return xp.sum(terms, axis=axis)
