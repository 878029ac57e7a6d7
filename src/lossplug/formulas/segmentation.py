r"""The overlap losses: Dice, Tversky, soft Jaccard and generalized Dice.

All four are made of the same three sums per sample (or per sample and class), taken once by
``overlap_sums``: :math:`TP = \sum \hat y y`, :math:`P = \sum \hat y` and :math:`Y = \sum y`
(squares for Dice's ``squared=True``), from masks or from integer label maps without a one-hot.
"""

from __future__ import annotations

from lossplug.formulas import division


def dice_score(xp, intersection, denominator, smooth):
    r"""The Dice ratio :math:`(2I + s)/(D + s)`; 1 where :math:`D + s = 0` (both masks empty).

    This is the extension point a subclass overrides for another smoothing rule.
    """
    return _ratio(xp, 2.0 * intersection + smooth, denominator + smooth)


def _keras_dice_score(xp, intersection, denominator, smooth):
    return _ratio(xp, 2.0 * intersection, denominator + smooth)


def _monai_dice_score(xp, intersection, denominator, smooth):
    return division(xp, 2.0 * intersection + smooth, denominator + smooth)


def _ratio(xp, num, den):
    """``num / den``, and 1 where ``den`` is 0 (nothing predicted, nothing to find: a perfect score)."""
    positive = den > 0
    one = 1.0 + 0.0 * den
    return xp.where(positive, num / xp.where(positive, den, one), one)


def _ratio_rule(numerics):
    """The overlap ratio's division: MONAI's plain one (``numerics="monai"``, 0/0 is NaN), else ``_ratio``."""
    return division if numerics == "monai" else _ratio


def monai_channels(xp, y_pred, axis, from_logits, activation, include_background, numerics):
    """``(from_logits, include_background)`` as MONAI applies them (``numerics="monai"``): on a
    single channel its losses ignore ``softmax=True`` (y_pred is taken as it is) and
    ``include_background=False`` (the channel is kept), with a warning; elsewhere as given.
    (MONAI also divides plainly: a zero denominator gives NaN, not lossplug's score of 1.)"""
    shape = xp.shape(y_pred)
    if numerics != "monai" or len(shape) < 2 or shape[axis] != 1:
        return from_logits, include_background
    return from_logits and activation != "softmax", True


def dice(
    xp, y_pred, y_true, *, from_logits, smooth, squared, aggregation, per_class, class_weights,
    include_background, activation, ignore_index, axis, sync_dist, numerics="lossplug", score=dice_score,
):
    r"""Dice loss :math:`1 - (2\sum\hat y y + s)/(\sum\hat y^2 + \sum y^2 + s)`.

    Returns one loss per sample (``aggregation="sample"``) or one for the batch (``"batch"``).
    ``y_true`` is either shaped like ``y_pred`` (binary, multilabel or one-hot masks) or an integer
    label map without the class axis, compared class by class along ``axis`` (as its one-hot
    encoding would be, but without building it where the backend has ``sum_by_label``). Positions
    labelled ``ignore_index`` are removed from numerator and denominator. ``numerics="keras"``:
    Keras's ``Dice``, :math:`2I/(D + s)`, the smoothing in the denominator only.
    ``numerics="monai"``: MONAI's single-channel rule (``monai_channels``).
    """
    if numerics in ("keras", "monai"):
        score = _keras_dice_score if numerics == "keras" else _monai_dice_score
    from_logits, include_background = monai_channels(
        xp, y_pred, axis, from_logits, activation, include_background, numerics)
    tp, p_sum, y_sum = overlap_sums(
        xp, y_pred, y_true, from_logits=from_logits, activation=activation, axis=axis, squared=squared,
        per_class=per_class, include_background=include_background, ignore_index=ignore_index,
    )
    intersection, denominator = aggregate(xp, (tp, p_sum + y_sum), aggregation, sync_dist)
    loss = 1.0 - score(xp, intersection, denominator, smooth)
    return class_mean(xp, loss, per_class, class_weights, include_background), None


def tversky(
    xp, y_pred, y_true, *, from_logits, alpha, beta, gamma, smooth, aggregation, per_class,
    class_weights, include_background, activation, ignore_index, axis, sync_dist, numerics="lossplug",
):
    r"""Tversky loss :math:`(1 - (TP + s)/(TP + \alpha FP + \beta FN + s))^\gamma`.

    :math:`FP = \sum\hat y(1 - y) = P - TP`, :math:`FN = \sum(1 - \hat y)y = Y - TP`; ``gamma != 1``
    is the focal Tversky loss (the power is taken per class with ``per_class``, then averaged).
    ``alpha = beta = 0.5`` is Dice with ``squared=False`` and smoothing ``2s``. ``numerics="keras"``:
    Keras's ``Tversky``, :math:`TP/(TP + \alpha FP + \beta FN + s)`, the smoothing in the denominator only.
    ``numerics="monai"``: MONAI's single-channel rule (``monai_channels``).
    """
    from_logits, include_background = monai_channels(
        xp, y_pred, axis, from_logits, activation, include_background, numerics)
    tp, p_sum, y_sum = overlap_sums(
        xp, y_pred, y_true, from_logits=from_logits, activation=activation, axis=axis, squared=False,
        per_class=per_class, include_background=include_background, ignore_index=ignore_index,
    )
    tp, p_sum, y_sum = aggregate(xp, (tp, p_sum, y_sum), aggregation, sync_dist)
    den = tp + alpha * (p_sum - tp) + beta * (y_sum - tp) + smooth
    loss = 1.0 - _ratio_rule(numerics)(xp, tp if numerics == "keras" else tp + smooth, den)
    if gamma != 1.0:
        # the rounding of P - TP can leave loss a hair below 0; at 0 the power and (for gamma < 1)
        # its gradient are taken at 1 instead, and the value set to 0
        positive = loss > 0
        loss = xp.where(positive, xp.power(xp.where(positive, loss, 1.0 + 0.0 * loss), gamma), 0.0 * loss)
    return class_mean(xp, loss, per_class, class_weights, include_background), None


def jaccard(
    xp, y_pred, y_true, *, from_logits, smooth, aggregation, per_class, class_weights,
    include_background, activation, ignore_index, axis, sync_dist, numerics="lossplug",
):
    r"""Soft Jaccard (IoU) loss :math:`1 - (I + s)/(\sum\hat y + \sum y - I + s)`, :math:`I = \sum\hat y y`.

    ``smooth=s`` is MONAI's ``DiceLoss(jaccard=True, smooth_nr=2s, smooth_dr=2s)``.
    ``numerics="monai"``: MONAI's single-channel rule (``monai_channels``).
    """
    from_logits, include_background = monai_channels(
        xp, y_pred, axis, from_logits, activation, include_background, numerics)
    tp, p_sum, y_sum = overlap_sums(
        xp, y_pred, y_true, from_logits=from_logits, activation=activation, axis=axis, squared=False,
        per_class=per_class, include_background=include_background, ignore_index=ignore_index,
    )
    tp, total = aggregate(xp, (tp, p_sum + y_sum), aggregation, sync_dist)
    loss = 1.0 - _ratio_rule(numerics)(xp, tp + smooth, total - tp + smooth)
    return class_mean(xp, loss, per_class, class_weights, include_background), None


def generalized_dice(
    xp, y_pred, y_true, *, from_logits, smooth, weight_type, aggregation, class_weights,
    include_background, activation, ignore_index, axis, sync_dist, numerics="lossplug",
):
    r"""Generalized Dice loss :math:`1 - (2\sum_c w_c I_c + s)/(\sum_c w_c(\sum\hat y_c + \sum y_c) + s)`.

    Sums per class over the spatial axes (and the batch, with ``aggregation="batch"``); the class
    weight :math:`w_c` is :math:`1/Y_c^2` (``"square"``), :math:`1/Y_c` (``"simple"``) or 1
    (``"uniform"``), times ``class_weights`` where given. A class absent from ``y`` (:math:`Y_c = 0`)
    takes the largest weight of the present ones, as MONAI's ``GeneralizedDiceLoss`` does.
    ``numerics="monai"``: MONAI's single-channel rule (``monai_channels``).
    """
    from_logits, include_background = monai_channels(
        xp, y_pred, axis, from_logits, activation, include_background, numerics)
    tp, p_sum, y_sum = overlap_sums(
        xp, y_pred, y_true, from_logits=from_logits, activation=activation, axis=axis, squared=False,
        per_class=True, include_background=include_background, ignore_index=ignore_index,
    )
    tp, total, y_sum = aggregate(xp, (tp, p_sum + y_sum, y_sum), aggregation, sync_dist)
    w = _generalized_weights(xp, y_sum, weight_type)
    if class_weights is not None:
        w = w * xp.constant(class_weights if include_background else class_weights[1:], w)
    num = 2.0 * xp.sum(w * tp, axis=-1) + smooth
    return 1.0 - _ratio_rule(numerics)(xp, num, xp.sum(w * total, axis=-1) + smooth), None


def _generalized_weights(xp, y_sum, weight_type):
    """Generalized Dice's class weights from the target sums ``(..., C)``."""
    one = 1.0 + 0.0 * y_sum
    if weight_type == "uniform":
        return one
    present = y_sum > 0
    safe = xp.where(present, y_sum, one)
    w = xp.where(present, 1.0 / (xp.square(safe) if weight_type == "square" else safe), 0.0 * one)
    largest = xp.max(w, axis=-1, keepdims=True)
    return xp.where(present, w, largest + 0.0 * w)


def overlap_sums(
    xp, y_pred, y_true, *, from_logits, activation, axis, squared, per_class, include_background,
    ignore_index,
):
    r"""The sums of every overlap loss: :math:`TP = \sum\hat y y`, :math:`P = \sum\hat y`, :math:`Y = \sum y`.

    ``squared=True`` gives :math:`\sum\hat y^2` and :math:`\sum y^2` instead. Each is ``(N,)``
    (sums over every non-batch axis) or, with ``per_class``, ``(N, C)`` (sums over the spatial
    axes; ``C - 1`` columns without the background). ``y_true`` is either shaped like ``y_pred``
    (binary, multilabel or one-hot masks) or an integer label map without the class axis,
    compared class by class along ``axis`` (as its one-hot encoding would be, but without building
    it where the backend has ``sum_by_label``). Positions labelled ``ignore_index`` count in no sum.
    With ``from_logits``, ``activation="auto"`` is softmax for label maps with C > 1, else sigmoid.
    """
    ndim = len(xp.shape(y_pred))
    label_map = len(xp.shape(y_true)) == ndim - 1
    num_classes = xp.shape(y_pred)[axis] if ndim > 1 else 1
    act = None  # the activation applied to y_pred: "softmax", "sigmoid" or None
    if from_logits:
        softmax = activation == "softmax" or (activation == "auto" and label_map and num_classes > 1)
        act = "softmax" if softmax else "sigmoid"

    if label_map and num_classes > 1 and axis != 0 and (not per_class or hasattr(xp, "sum_by_label")):
        return _label_map_sums(
            xp, y_pred, y_true, activation=act, num_classes=num_classes, axis=axis, squared=squared,
            per_class=per_class, include_background=include_background, ignore_index=ignore_index,
        )
    return _mask_sums(
        xp, _activate(xp, y_pred, act, axis), y_true, label_map=label_map, num_classes=num_classes,
        axis=axis, squared=squared,
        per_class=per_class, include_background=include_background, ignore_index=ignore_index,
    )


def aggregate(xp, sums, aggregation, sync_dist):
    """``aggregation="batch"``: each sum over the batch axis (and, with ``sync_dist``, over processes)."""
    if aggregation != "batch":
        return tuple(sums)
    return tuple(xp.batch_total(xp.sum(s, axis=0), sync_dist) for s in sums)


def class_mean(xp, loss, per_class, class_weights, include_background):
    """With ``per_class``, ``loss`` is ``(N, C)`` or ``(C,)``: its mean over classes (``class_weights``)."""
    if not per_class:
        return loss
    if class_weights is None:
        return xp.mean(loss, axis=-1)
    weights = class_weights if include_background else class_weights[1:]
    w = xp.constant(weights, loss)
    return xp.sum(w * loss, axis=-1) / xp.sum(w)


def _activate(xp, y_pred, activation, axis):
    if activation == "softmax":
        return xp.softmax(y_pred, axis)
    return xp.sigmoid(y_pred) if activation == "sigmoid" else y_pred


def _mask_sums(
    xp, p, y_true, *, label_map, num_classes, axis, squared, per_class, include_background, ignore_index
):
    """The three sums from a mask ``y`` shaped like ``p`` (label maps one-hot encoded)."""
    ndim = len(xp.shape(p))
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
        return intersection, _sum(xp, xp.square(p), axes), _sum(xp, xp.square(y), axes)
    return intersection, _sum(xp, p, axes), _sum(xp, y, axes)


def _label_map_sums(
    xp, y_pred, y_true, *, activation, num_classes, axis, squared, per_class, include_background,
    ignore_index,
):
    r"""The same sums for an integer label map, without building the one-hot ``y``.

    For a one-hot ``y``: :math:`\sum_c p_c y_c = p_{\text{label}}` (a gather) and
    :math:`\sum_c y_c^2 = \sum_c y_c = 1` per counted position; per class, both are sums
    grouped by label (``xp.sum_by_label``, ``xp.sum_at_labels``). Where the backend compares labels
    with the classes rather than gather (``xp.compares_labels``), the total of the gather is the
    total of ``sum_at_labels`` too.
    """
    ndim = len(xp.shape(y_pred))
    labels = xp.cast_labels(y_true)
    counted = None  # 1 where a position counts: not ignore_index, not background when it is dropped
    if ignore_index is not None:
        keep = labels != ignore_index
        labels = xp.where(keep, labels, 0 * labels)
        counted = xp.cast_like(keep, y_pred)
    p = _activate(xp, y_pred, activation, axis)
    if counted is not None:
        p = p * xp.expand_dims(counted, axis)
    if not include_background:
        foreground = xp.cast_like(labels != 0, p)
        counted = foreground if counted is None else counted * foreground
    at_label = xp.squeeze(xp.take_along_axis(p, xp.expand_dims(labels, axis), axis), axis)
    if counted is None:
        counted = xp.cast_like(0 * labels + 1, p)  # ones, and no function of y_pred (no gradient)
    else:
        at_label = at_label * counted
    p_terms = xp.square(p) if squared else p
    if not include_background:
        p_terms = xp.slice_axis(p_terms, 1, axis)
    if per_class:
        intersection = xp.sum_at_labels(p, labels, at_label, num_classes, axis)
        y_terms = xp.sum_by_label(counted, labels, num_classes)
        if not include_background:
            intersection, y_terms = xp.slice_axis(intersection, 1, 1), xp.slice_axis(y_terms, 1, 1)
        p_axes = tuple(a for a in range(1, ndim) if a != axis)
    else:
        label_axes = tuple(range(1, ndim - 1))
        if hasattr(xp, "compares_labels") and xp.compares_labels(num_classes):
            by_class = xp.sum_at_labels(p, labels, at_label, num_classes, axis)
            if not include_background:
                by_class = xp.slice_axis(by_class, 1, 1)
            intersection = xp.sum(by_class, axis=-1)
        else:
            intersection = _sum(xp, at_label, label_axes)
        y_terms = _sum(xp, counted, label_axes)
        p_axes = tuple(range(1, ndim))
    return intersection, _sum(xp, p_terms, p_axes), y_terms


def _sum(xp, x, axes):
    return xp.sum(x, axis=axes) if axes else x
