"""Dice loss."""

from __future__ import annotations


def dice_score(xp, intersection, denominator, smooth):
    r"""The Dice ratio :math:`(2I + s)/(D + s)`; 1 where :math:`D + s = 0` (both masks empty).

    This is the extension point a subclass overrides for another smoothing rule.
    """
    num, den = 2.0 * intersection + smooth, denominator + smooth
    positive = den > 0
    one = 1.0 + 0.0 * den
    return xp.where(positive, num / xp.where(positive, den, one), one)


def dice(
    xp, y_pred, y_true, *, from_logits, smooth, squared, aggregation, per_class, class_weights,
    include_background, activation, ignore_index, axis, sync_dist, score=dice_score,
):
    r"""Dice loss :math:`1 - (2\sum\hat y y + s)/(\sum\hat y^2 + \sum y^2 + s)`.

    Returns one loss per sample (``aggregation="sample"``) or one for the batch (``"batch"``).
    ``y_true`` is either shaped like ``y_pred`` (binary, multilabel or one-hot masks) or an integer
    label map without the class axis; the latter is one-hot encoded along ``axis``. Positions
    labelled ``ignore_index`` are removed from numerator and denominator.
    """
    ndim = len(xp.shape(y_pred))
    label_map = len(xp.shape(y_true)) == ndim - 1
    num_classes = xp.shape(y_pred)[axis] if ndim > 1 else 1
    p = y_pred
    if from_logits:
        softmax = activation == "softmax" or (activation == "auto" and label_map and num_classes > 1)
        p = xp.softmax(y_pred, axis) if softmax else xp.sigmoid(y_pred)

    keep = None
    if label_map:
        labels = xp.cast_int(y_true)
        if ignore_index is not None:
            keep = xp.expand_dims(labels != ignore_index, axis)
            labels = xp.where(labels != ignore_index, labels, 0 * labels)
        if num_classes > 1:
            y = xp.one_hot(labels, num_classes, axis, like=p)
        else:
            y = xp.expand_dims(xp.cast_like(labels, p), axis)
    else:
        y = y_true
        if ignore_index is not None:
            keep = y_true != ignore_index
    if keep is not None:
        keep = xp.cast_like(keep, p)
        p, y = p * keep, y * keep
    if not include_background:
        p, y = xp.slice_axis(p, 1, axis), xp.slice_axis(y, 1, axis)

    axes = tuple(a for a in range(1, ndim) if not (per_class and a == axis % ndim))
    intersection = _sum(xp, p * y, axes)
    if squared:
        denominator = _sum(xp, xp.square(p), axes) + _sum(xp, xp.square(y), axes)
    else:
        denominator = _sum(xp, p, axes) + _sum(xp, y, axes)
    if aggregation == "batch":
        intersection, denominator = xp.sum(intersection, axis=0), xp.sum(denominator, axis=0)
        if sync_dist:
            intersection, denominator = xp.all_reduce_sum(intersection), xp.all_reduce_sum(denominator)
    loss = 1.0 - score(xp, intersection, denominator, smooth)

    if per_class:  # loss is (N, C) or (C,): average over the class axis, now the last one
        if class_weights is None:
            return xp.mean(loss, axis=-1), None
        weights = class_weights if include_background else class_weights[1:]
        w = xp.constant(weights, loss)
        return xp.sum(w * loss, axis=-1) / xp.sum(w), None
    return loss, None


def _sum(xp, x, axes):
    return xp.sum(x, axis=axes) if axes else x
