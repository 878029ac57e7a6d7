r"""The Lovász losses of Berman, Rannen Triki and Blaschko (CVPR 2018): a convex surrogate of IoU.

The Lovász extension of the Jaccard loss :math:`\Delta_J` evaluated at a vector of errors
:math:`m`: sort the errors in decreasing order, :math:`m_{\pi_1} \ge m_{\pi_2} \ge \dots`, and
take :math:`\sum_i m_{\pi_i}\,(\Delta_J(\{\pi_1..\pi_i\}) - \Delta_J(\{\pi_1..\pi_{i-1}\}))`, where
:math:`\Delta_J(A) = 1 - |G \setminus A|\,/\,|G \cup A|` for the ground-truth set :math:`G` (the
authors' ``lovasz_grad``). Ties do not change the value, so every framework's sort gives the same.
"""

from __future__ import annotations


def lovasz(xp, y_pred, y_true, *, from_logits, aggregation, ignore_index, axis):
    r"""Lovász hinge (binary, on logits) or Lovász-softmax (multiclass): one value per sample.

    - ``y_true`` an integer label map and ``C > 1`` classes along ``axis``: Lovász-softmax, errors
      :math:`|[y = c] - p_c|` per class (``p`` the softmax of ``y_pred`` with ``from_logits``),
      averaged over the classes present in ``y_true`` (the authors' ``classes="present"``).
    - ``y_true`` a mask shaped like ``y_pred`` (or a label map with one channel): every entry a
      binary problem. With ``from_logits``, the Lovász hinge: errors :math:`1 - \hat y\,(2y - 1)`,
      clipped at 0; on probabilities the authors' sigmoid variant, errors :math:`|y - \hat y|`.

    ``aggregation="sample"`` takes one Lovász loss per sample (the authors' ``per_image=True``),
    ``"batch"`` one over every position of the batch. Entries labelled ``ignore_index`` are left out.
    """
    ndim = len(xp.shape(y_pred))
    label_map = len(xp.shape(y_true)) == ndim - 1
    num_classes = xp.shape(y_pred)[axis] if ndim > 1 else 1
    batch = aggregation == "batch"
    keep = None
    if label_map:
        labels = xp.cast_int(y_true)
        if ignore_index is not None:
            keep = labels != ignore_index
            labels = xp.where(keep, labels, 0 * labels)
        if num_classes > 1:
            return _lovasz_softmax(xp, y_pred, labels, keep, from_logits, axis, batch), None
        y = xp.cast_like(labels, y_pred)  # one channel: labels 0 and 1 are the mask
        y_pred = xp.squeeze(y_pred, axis)
    else:
        y = y_true
        if ignore_index is not None:
            keep = y != ignore_index
            y = xp.where(keep, y, 0.0 * y)
    def rows(a):  # (N, P) per sample, (1, N * P) for the batch
        return xp.reshape(a, (1, -1)) if batch else xp.flatten(a, 1)

    x, y = rows(y_pred), rows(y)
    valid = None if keep is None else rows(xp.cast_like(keep, x))
    if from_logits:
        errors = 1.0 - x * (2.0 * y - 1.0)
    else:
        errors = xp.abs(y - x)
    loss = _lovasz_extension(xp, errors, y, valid, hinge=from_logits)
    return (loss[0] if batch else loss), None


def _lovasz_softmax(xp, y_pred, labels, keep, from_logits, axis, batch):
    """Lovász-softmax: the extension per class (rows, C, P), averaged over the present classes."""
    num_classes = xp.shape(y_pred)[axis]
    p = xp.softmax(y_pred, axis) if from_logits else y_pred
    p = xp.moveaxis(p, axis, 1)  # (N, C, ...)
    fg = xp.one_hot(labels, num_classes, 1, like=p)  # the per-class masks the sort needs anyway
    if batch:  # (1, C, N * P): one problem over the whole batch
        p = xp.reshape(xp.moveaxis(p, 1, 0), (1, num_classes, -1))
        fg = xp.reshape(xp.moveaxis(fg, 1, 0), (1, num_classes, -1))
    else:  # (N, C, P)
        p, fg = xp.flatten(p, 2), xp.flatten(fg, 2)
    valid = None
    if keep is not None:
        keep = xp.cast_like(keep, p)
        valid = xp.reshape(keep, (1, 1, -1)) if batch else xp.expand_dims(xp.flatten(keep, 1), 1)
        fg = fg * valid
        valid = valid + 0.0 * fg  # (rows, C, P)
    losses = _lovasz_extension(xp, xp.abs(fg - p), fg, valid, hinge=False)  # (rows, C)
    present = xp.cast_like(xp.sum(fg, axis=-1) > 0, losses)
    count = xp.sum(present, axis=-1)
    safe = xp.where(count > 0, count, 1.0 + 0.0 * count)
    loss = xp.sum(present * losses, axis=-1) / safe  # 0 where no class is present
    return loss[0] if batch else loss


def _lovasz_extension(xp, errors, fg, valid, *, hinge):
    """The Lovász extension of the Jaccard loss at ``errors``, along the last axis.

    ``fg`` is the 0/1 ground truth, ``valid`` 1 where an entry counts (``None``: all). Entries that
    do not count sort last and add nothing; ``hinge`` clips the errors at 0 (after sorting, as the
    authors do).
    """
    key = errors if valid is None else xp.where(valid > 0, errors, -float("inf") + 0.0 * errors)
    order = xp.argsort(key, axis=-1, descending=True)
    e = xp.take_along_axis(errors, order, axis=-1)
    g = xp.take_along_axis(fg, order, axis=-1)
    if valid is None:
        v = 1.0 + 0.0 * g
    else:
        v = xp.take_along_axis(valid, order, axis=-1)
        e = e * v
    if hinge:
        e = xp.where(e > 0, e, 0.0 * e)
    # Delta_J of the first i entries: 1 - (gts - cumsum(g)) / (gts + cumsum(v - g)); and of the
    # first i - 1, from the same sums less entry i (0 for the empty set)
    gts = xp.sum(g, axis=-1, keepdims=True)
    inside = xp.cumsum(g, axis=-1)
    outside = xp.cumsum(v - g, axis=-1)
    jac = _jaccard_loss(xp, gts - inside, gts + outside)
    jac_before = _jaccard_loss(xp, gts - inside + g, gts + outside - (v - g))
    return xp.sum(e * (jac - jac_before), axis=-1)


def _jaccard_loss(xp, missed, union):
    positive = union > 0
    one = 1.0 + 0.0 * union
    return xp.where(positive, 1.0 - missed / xp.where(positive, union, one), 0.0 * union)
