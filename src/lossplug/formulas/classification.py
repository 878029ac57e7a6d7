"""Binary, categorical and sparse categorical cross-entropy."""

from __future__ import annotations


def bce(xp, y_pred, y_true, *, from_logits, label_smoothing, eps, numerics="lossplug"):
    r"""Binary cross-entropy :math:`-[y\log p + (1-y)\log(1-p)]`, elementwise."""
    return weighted_bce(
        xp, y_pred, y_true, pos_weight=1.0, neg_weight=1.0,
        from_logits=from_logits, label_smoothing=label_smoothing, eps=eps, numerics=numerics,
    )


def weighted_bce(
    xp, y_pred, y_true, *, pos_weight, neg_weight, from_logits, label_smoothing, eps, numerics="lossplug"
):
    r"""Weighted BCE :math:`-[w_+ y\log p + w_-(1-y)\log(1-p)]`, elementwise.

    With logits, :math:`\log p = -\operatorname{softplus}(-x)` and
    :math:`\log(1-p) = -\operatorname{softplus}(x)`: finite for any finite logit.
    ``numerics="torch"`` (probabilities): torch's ``BCELoss``, no clipping, :math:`\max(\log p, -100)`
    and :math:`\max(\operatorname{log1p}(-p), -100)`. ``numerics="keras"``: Keras's
    :math:`\log(1 - \operatorname{clip}(p))`, which in float32 is :math:`\log 2^{-23}` at p = 1.
    """
    y = y_true
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return bce_with_logits(xp, y_pred, y, pos_weight, neg_weight), None
    if numerics == "torch":
        pos, neg = y * torch_log(xp, y_pred), (1.0 - y) * torch_log(xp, y_pred, complement=True)
    elif numerics == "keras":
        p = xp.clip(y_pred, eps, 1.0 - eps)
        pos, neg = y * xp.log(p), (1.0 - y) * xp.log(1.0 - p)
    else:  # 1 - p is clipped on its own: in float32, 1 - clip(p) at p = 1 would be 2**-23, not eps
        p, q = xp.clip(y_pred, eps, 1.0 - eps), xp.clip(1.0 - y_pred, eps, 1.0 - eps)
        pos, neg = y * xp.log(p), (1.0 - y) * xp.log(q)
    if pos_weight != 1.0:
        pos = pos_weight * pos
    if neg_weight != 1.0:
        neg = neg_weight * neg
    return -(pos + neg), None


def torch_log(xp, p, complement=False):
    r"""torch's BCE logs: :math:`\max(\log p, -100)`, or :math:`\max(\operatorname{log1p}(-p), -100)`.

    p = 0 (1 with ``complement``) gives -100 with a zero gradient, not :math:`-\infty`.
    """
    inside = p < 1.0 if complement else p > 0.0
    safe = xp.where(inside, p, 0.5 + 0.0 * p)
    if complement:  # log1p(-p) from log alone (Goldberg): log(u) (-p) / (u - 1), u = 1 - p rounded
        u = 1.0 - safe
        exact = u == 1.0
        log = xp.where(exact, -safe, xp.log(u) * -safe / xp.where(exact, 0.5 + 0.0 * u, u - 1.0))
    else:
        log = xp.log(safe)
    return xp.where(inside & (log > -100.0), log, -100.0 + 0.0 * log)


def keras_probs(xp, y_pred, *, from_logits, eps, axis):
    """Keras's categorical probabilities: softmax of logits, renormalised by their sum, clipped."""
    p = xp.softmax(y_pred, axis) if from_logits else y_pred
    p = p / xp.sum(p, axis=axis, keepdims=True)
    return xp.clip(p, eps, 1.0 - eps)


def _log_probs(xp, y_pred, *, from_logits, eps, axis, numerics="lossplug"):
    if numerics == "keras" and not from_logits:  # Keras: renormalised by the sum, then clipped
        return xp.log(keras_probs(xp, y_pred, from_logits=False, eps=eps, axis=axis))
    if from_logits:
        return xp.log_softmax(y_pred, axis)
    return xp.log(xp.clip(y_pred, eps, 1.0 - eps))


def bce_with_logits(xp, logits, y, pos_weight=1.0, neg_weight=1.0):
    r""":math:`w_-(1-y)\operatorname{softplus}(x) + w_+ y\operatorname{softplus}(-x)`, elementwise.

    With :math:`s = \log(1 + e^{-|x|})`, :math:`\operatorname{softplus}(\pm x) = \max(\pm x, 0) + s`,
    so the unweighted loss is :math:`s + (1 - y)x` where :math:`x \ge 0`, :math:`s - yx` elsewhere:
    every term is non-negative (no cancellation), so confident logits keep their precision (a
    term of 1e-7 at :math:`|x| = 16` is exact in float32); one ``exp``, one ``log1p``, one select.
    """
    s = xp.log1p(xp.exp(xp.minus_abs(logits)))
    if pos_weight == neg_weight:
        out = s + logits * xp.where(logits >= 0, 1.0 - y, -y)
        return out if pos_weight == 1.0 else pos_weight * out
    pos, neg = xp.relu(-logits) + s, xp.relu(logits) + s
    return neg_weight * ((1.0 - y) * neg) + pos_weight * (y * pos)


def _shifted_logsumexp(xp, logits, axis):
    """``z = x - max x`` along ``axis`` (the max held constant) and ``log sum exp z``."""
    z = logits - xp.stop_gradient(xp.max(logits, axis=axis, keepdims=True))
    return z, xp.log(xp.sum(xp.exp(z), axis=axis))


def _two_class_gap(xp, logits, axis):
    """``x_1 - x_0`` where ``logits`` has two classes along its last axis, else ``None``.

    Then the cross-entropy is a softplus of it: no 2-wide innermost reduction, which is slow under
    XLA (Keras's layout). Along a leading axis, (N, 2, H, W), torch's derived kernel of the general
    form is the faster one.
    """
    shape = xp.shape(logits)
    if shape[axis] != 2 or axis % len(shape) != len(shape) - 1:
        return None
    return xp.select(logits, 1, axis) - xp.select(logits, 0, axis)


def _broadcast_weights(xp, class_weights, like, axis):
    """Class weights shaped to broadcast along ``axis`` of ``like``."""
    shape = [1] * len(xp.shape(like))
    shape[axis] = -1
    return xp.reshape(xp.constant(class_weights, like), shape)


def categorical_ce(
    xp, y_pred, y_true, *, from_logits, label_smoothing, class_weights, ignore_index, axis, eps,
    numerics="lossplug",
):
    r"""Cross-entropy :math:`-\sum_c y_c \log p_c` per sample (and spatial position).

    ``class_weights`` turn it into :math:`-\sum_c w_c y_c \log p_c`, and the mean then divides by
    :math:`\sum_i \sum_c w_c y_{ic}` (torch's rule for index targets), so one-hot targets give
    exactly the sparse loss. A sample whose target is class ``ignore_index``
    (:math:`y_{\text{ignore}} > 0.5`) counts neither in the sum nor in the mean.
    ``numerics="keras"`` (probabilities): Keras's renormalisation :math:`p / \sum_c p_c` before the clip.
    ``numerics="torch"``: torch's weighted mean, NaN (0/0) where no target counts (the reduction's).
    ``numerics="monai"`` (logits): on a single channel, MONAI's ``DiceCELoss`` BCE with logits.
    """
    num_classes = xp.shape(y_pred)[axis]
    if numerics == "monai" and from_logits and num_classes == 1:
        return monai_one_channel_bce(xp, y_pred, y_true, axis, ignore_index)
    y = y_true
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / num_classes
    weight = None
    if class_weights is not None:
        w = _broadcast_weights(xp, class_weights, y_pred, axis)
        y, weight = w * y, xp.sum(w * y_true, axis=axis)
    d = _two_class_gap(xp, y_pred, axis) if from_logits else None
    if d is not None:  # lse(x) - x_0 = softplus(x_1 - x_0), the same for x_1
        loss = xp.select(y, 0, axis) * xp.softplus(d) + xp.select(y, 1, axis) * xp.softplus(-d)
    elif from_logits:  # (sum_c y_c) lse - sum_c y_c z_c, z = x - max x <= 0: non-negative terms
        z, lse = _shifted_logsumexp(xp, y_pred, axis)  # (lse not broadcast back: one pass fewer)
        loss = xp.sum(y, axis=axis) * lse - xp.sum(y * z, axis=axis)
    else:
        log_p = _log_probs(xp, y_pred, from_logits=False, eps=eps, axis=axis, numerics=numerics)
        loss = -xp.sum(y * log_p, axis=axis)
    if ignore_index is not None:
        keep = xp.cast_like(xp.select(y_true, ignore_index, axis) <= 0.5, loss)
        loss = loss * keep
        weight = keep if weight is None else weight * keep
    return loss, weight


def sparse_categorical_ce(
    xp, y_pred, labels, *, from_logits, label_smoothing, class_weights, ignore_index, axis, eps,
    numerics="lossplug",
):
    r"""Cross-entropy :math:`-\log p_{\text{label}}` per sample (and spatial position).

    With ``class_weights`` each term is multiplied by :math:`w_{\text{label}}` and the mean divides
    by :math:`\sum_i w_{y_i}`; ``ignore_index`` labels count neither in the sum nor in the mean;
    ``label_smoothing`` mixes in :math:`\tfrac{1}{C}\sum_c -w_c\log p_c` as torch does.
    ``numerics="keras"`` (probabilities): Keras's renormalisation :math:`p / \sum_c p_c` before the clip.
    ``numerics="torch"``: torch's weighted mean, NaN (0/0) where no target counts (the reduction's).
    ``numerics="monai"`` (logits): on a single channel, MONAI's ``DiceCELoss`` BCE with logits, the
    labels (0 or 1) its targets.
    """
    num_classes = xp.shape(y_pred)[axis]
    if numerics == "monai" and from_logits and num_classes == 1:
        return monai_one_channel_bce(xp, y_pred, labels, axis, ignore_index)
    labels = xp.cast_int(labels)
    keep = None
    if ignore_index is not None:
        keep = labels != ignore_index
        labels = xp.where(keep, labels, 0 * labels)
    index = xp.expand_dims(labels, axis)
    d = _two_class_gap(xp, y_pred, axis) if from_logits and not label_smoothing else None
    if d is not None:  # lse(x) - x_label = softplus(x_other - x_label)
        nll = xp.softplus(xp.where(labels == 1, -d, d))
    elif from_logits:  # lse(z) - z_label, z = x - max x: no log-softmax tensor
        z, lse = _shifted_logsumexp(xp, y_pred, axis)
        log_p = None
        nll = lse - xp.squeeze(xp.take_along_axis(z, index, axis), axis)
    elif label_smoothing or numerics == "keras":
        log_p = _log_probs(xp, y_pred, from_logits=False, eps=eps, axis=axis, numerics=numerics)
        nll = -xp.squeeze(xp.take_along_axis(log_p, index, axis), axis)
    else:  # gather first: only one probability per sample is clipped and logged
        p = xp.squeeze(xp.take_along_axis(y_pred, index, axis), axis)
        nll = -xp.log(xp.clip(p, eps, 1.0 - eps))
    weight = None
    if class_weights is not None:
        weight = xp.take(xp.constant(class_weights, y_pred), labels)
        nll = nll * weight
    loss = nll
    if label_smoothing:  # (1/C) sum_c -w_c log p_c, as torch does
        terms = xp.expand_dims(lse, axis) - z if log_p is None else -log_p
        if class_weights is not None:
            terms = terms * _broadcast_weights(xp, class_weights, y_pred, axis)
        smooth = xp.sum(terms, axis=axis) / num_classes
        loss = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    if keep is not None:
        keep = xp.cast_like(keep, loss)
        loss = loss * keep
        weight = keep if weight is None else weight * keep
    return loss, weight


def monai_one_channel_bce(xp, logits, y_true, axis, ignore_index):
    """MONAI's ``DiceCELoss`` on a single channel: ``BCEWithLogitsLoss`` of the channel (no label
    smoothing, no class weights), per position; ``y_true`` a mask like ``logits`` or a 0/1 label map."""
    x = xp.squeeze(logits, axis)
    label_map = len(xp.shape(y_true)) == len(xp.shape(logits)) - 1
    y = xp.cast_like(y_true, x) if label_map else xp.squeeze(y_true, axis)
    loss, weight = bce_with_logits(xp, x, y), None
    if ignore_index is not None:
        keep = xp.cast_like(y != ignore_index, loss)
        loss, weight = loss * keep, keep
    return loss, weight
