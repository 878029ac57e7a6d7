"""Binary and categorical focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma."""

from __future__ import annotations

from lossplug.formulas import classification


def modulating(xp, q, gamma):
    r"""The focal factor :math:`q^\gamma`, :math:`q = 1 - p_t`, with finite gradients at :math:`q = 0`.

    Integer powers 1 and 2 are products (what compilers fuse best); :math:`\gamma < 1`, whose
    derivative is infinite at 0, is 0 there with a zero gradient.
    """
    if gamma == 1:
        return q
    if gamma == 2:
        return q * q
    if gamma > 1:
        return q**gamma
    positive = q > 0
    safe = xp.where(positive, q, 1.0 + 0.0 * q)
    return xp.where(positive, safe**gamma, 0.0 * q)


def focal(xp, y_pred, y_true, *, gamma, alpha, from_logits, label_smoothing, eps, numerics="lossplug"):
    r"""Binary focal loss :math:`\alpha_t (1 - p_t)^\gamma \operatorname{BCE}(p, y)`, elementwise.

    :math:`p_t = y p + (1 - y)(1 - p)`, :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)` (1 when
    ``alpha`` is None). The BCE is lossplug's (log-space with logits, clipped probabilities
    otherwise); with logits :math:`1 - p_t = y\,\sigma(-x) + (1 - y)\,\sigma(x)`, so it stays
    exact where :math:`p` rounds to 1. :math:`\gamma = 0`, ``alpha=None`` is exactly ``bce``.
    ``numerics="keras"``: Keras's ``BinaryFocalCrossentropy`` (JAX and torch backends): logits go
    through a sigmoid, the BCE is taken of :math:`\operatorname{clip}(p)`, :math:`p_t` of :math:`p` unclipped.
    """
    if numerics == "keras":
        return _keras_focal(xp, y_pred, y_true, gamma, alpha, from_logits, label_smoothing, eps), None
    if gamma == 0 and alpha is None:  # exactly bce, by construction
        return classification.bce(
            xp, y_pred, y_true, from_logits=from_logits, label_smoothing=label_smoothing, eps=eps
        )
    y = y_true
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        loss = classification.bce_with_logits(xp, y_pred, y)
    else:
        p, q = xp.clip(y_pred, eps, 1.0 - eps), xp.clip(1.0 - y_pred, eps, 1.0 - eps)
        loss = -(y * xp.log(p) + (1.0 - y) * xp.log(q))
    if gamma != 0:
        if from_logits:
            # sigma(|x|) = 1 / (1 + e) and sigma(-|x|) = e / (1 + e), e = exp(-|x|) as in the BCE
            # (one exp once compiled), each exact where the other rounds to 1
            up, e = y_pred >= 0, xp.exp(xp.minus_abs(y_pred))
            r = 1.0 / (1.0 + e)
            one_minus_pt = y * xp.where(up, e * r, r) + (1.0 - y) * xp.where(up, r, e * r)
        else:
            p = xp.clip(y_pred, eps, 1.0 - eps)
            one_minus_pt = y * (1.0 - p) + (1.0 - y) * p
        loss = modulating(xp, one_minus_pt, gamma) * loss
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return loss, None


def _keras_focal(xp, y_pred, y, gamma, alpha, from_logits, label_smoothing, eps):
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = xp.sigmoid(y_pred) if from_logits else y_pred
    clipped = xp.clip(p, eps, 1.0 - eps)
    loss = -(y * xp.log(clipped) + (1.0 - y) * xp.log(1.0 - clipped))
    if gamma != 0:
        loss = modulating(xp, 1.0 - (y * p + (1.0 - y) * (1.0 - p)), gamma) * loss
    return loss if alpha is None else (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss


def categorical_focal(
    xp, y_pred, y_true, *, gamma, alpha, from_logits, label_smoothing, ignore_index, axis, eps,
    numerics="lossplug",
):
    r"""Categorical focal loss :math:`-\sum_c \alpha_c (1 - p_c)^\gamma y_c \log p_c` per position.

    ``y_true`` is one-hot/soft (shaped like ``y_pred``) or integer labels (one axis fewer);
    ``alpha`` is None (1), a number (scales every class, as Keras's) or one weight per class.
    Positions whose target is ``ignore_index`` count neither in the sum nor in the mean.
    :math:`\gamma = 0`, ``alpha=None`` is exactly the cross-entropy. ``numerics="keras"``: Keras's
    probabilities, the softmax of logits (not log-space), renormalised by their sum and clipped.
    """
    ndim = len(xp.shape(y_pred))
    num_classes = xp.shape(y_pred)[axis]
    if isinstance(alpha, tuple) and len(alpha) != num_classes:
        raise ValueError(
            f"CategoricalFocalLoss: alpha has {len(alpha)} entries but y_pred has {num_classes} "
            f"classes along axis {axis}"
        )
    labels_given = len(xp.shape(y_true)) == ndim - 1
    if gamma == 0 and alpha is None and numerics != "keras":  # exactly the cross-entropy
        ce = classification.sparse_categorical_ce if labels_given else classification.categorical_ce
        return ce(
            xp, y_pred, y_true, from_logits=from_logits, label_smoothing=label_smoothing,
            class_weights=None, ignore_index=ignore_index, axis=axis, eps=eps,
        )
    keep = None
    if labels_given:
        labels = xp.cast_int(y_true)
        if ignore_index is not None:
            keep = labels != ignore_index
            labels = xp.where(keep, labels, 0 * labels)
        y = xp.one_hot(labels, num_classes, axis, like=y_pred)
    else:
        y = y_true
        if ignore_index is not None:
            keep = xp.select(y_true, ignore_index, axis) <= 0.5
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / num_classes
    if numerics == "keras":
        p = classification.keras_probs(xp, y_pred, from_logits=from_logits, eps=eps, axis=axis)
        log_p = xp.log(p)
    elif from_logits:
        log_p = xp.log_softmax(y_pred, axis)
        p = xp.exp(log_p)
    else:
        p = xp.clip(y_pred, eps, 1.0 - eps)
        log_p = xp.log(p)
    terms = -y * log_p
    if gamma != 0:
        terms = modulating(xp, 1.0 - p, gamma) * terms
    if alpha is not None:
        if isinstance(alpha, tuple):
            shape = [1] * ndim
            shape[axis] = -1
            terms = xp.reshape(xp.constant(alpha, y_pred), shape) * terms
        else:
            terms = alpha * terms
    loss, weight = xp.sum(terms, axis=axis), None
    if keep is not None:
        keep = xp.cast_like(keep, loss)
        loss, weight = loss * keep, keep
    return loss, weight
