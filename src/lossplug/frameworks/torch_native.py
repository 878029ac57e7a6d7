"""torch's own loss kernels, for inputs too small for a compiled kernel to pay off.

Below ``lossplug.frameworks.derived.NATIVE_UP_TO`` elements (and without a gradient), where
torch has a kernel computing exactly a formula of ``lossplug.formulas`` with the module's
parameters, that kernel runs (``docs/benchmarks.md`` has the measurements). Each entry gives the
reduced loss (``"mean"`` by lossplug's rule: weighted means divide by the weights of the counted
targets, 0 if none counts) or ``None`` where its kernel does not express the parameters;
``tests/test_fast_paths.py`` pins every entry to the NumPy reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossplug import core as _core
from lossplug.frameworks.ops import get_backend

_xp = get_backend("torch")
_NO_LABEL = -(2**63)
"""The ``ignore_index`` handed to torch when there is none: torch's default, -100, would drop labels
of -100 that lossplug's check rejects."""


def _mse(m, x, y, axis):
    return F.mse_loss(x, y, reduction=m.reduction)


def _mae(m, x, y, axis):
    return F.l1_loss(x, y, reduction=m.reduction)


def _huber(m, x, y, axis):
    return F.huber_loss(x, y, reduction=m.reduction, delta=m.delta)


def _bce_with_logits(m, x, y, axis, pos=1.0, neg=1.0):
    if not m.from_logits or neg == 0 or pos / neg > torch.finfo(x.dtype).max / 2:
        return None  # probabilities: lossplug clips p and 1 - p apart, torch's kernel cannot
    if m.label_smoothing:
        y = y * (1.0 - m.label_smoothing) + 0.5 * m.label_smoothing
    pw = None if pos == neg else torch.tensor(pos / neg, dtype=x.dtype, device=x.device)
    out = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=m.reduction)
    return out if neg == 1.0 else neg * out


def _weighted_bce(m, x, y, axis):
    return _bce_with_logits(m, x, y, axis, m.pos_weight, m.neg_weight)


def _class_weights(m, x):
    w = m._buffers.get("class_weights")  # not through nn.Module.__getattr__: this runs every call
    return None if w is None else w.to(device=x.device, dtype=x.dtype)


def _sparse_ce(m, x, labels, axis):
    if not m.from_logits or axis != 1:
        return None
    w, ignore = _class_weights(m, x), _NO_LABEL if m.ignore_index is None else m.ignore_index
    labels = labels.long()
    if m.reduction == "mean" and w is None and m.ignore_index is None:
        return F.cross_entropy(x, labels, ignore_index=_NO_LABEL, label_smoothing=m.label_smoothing)
    total = F.cross_entropy(
        x, labels, weight=w, ignore_index=ignore, label_smoothing=m.label_smoothing, reduction="sum"
    )
    if m.reduction == "sum":
        return total
    keep = labels != ignore
    den = keep.sum().to(x.dtype) if w is None else (w[torch.where(keep, labels, 0)] * keep).sum()
    return _core.safe_ratio(_xp, total, den)


def _categorical_ce(m, x, y, axis):
    if not m.from_logits or m.ignore_index is not None or axis != 1:
        return None
    w = _class_weights(m, x)
    total = F.cross_entropy(x, y, weight=w, label_smoothing=m.label_smoothing, reduction="sum")
    if m.reduction == "sum":
        return total
    if w is None:
        return total / (x.numel() // x.shape[1])
    return _core.safe_ratio(_xp, total, torch.dot(y.sum(dim=[d for d in range(y.dim()) if d != 1]), w))


def _kl_div(m, q, p, axis):
    if m.log_input or axis != 1:
        return None  # log_input may hold -inf where p = 0; the formula's where() handles that
    log_q = F.log_softmax(q, dim=1) if m.from_logits else torch.log(torch.clamp(q, m.eps, 1.0))
    total = F.kl_div(log_q, p, reduction="sum")
    return total if m.reduction == "sum" else total / (q.numel() // q.shape[1])


ROUTES = {
    "mse": _mse, "mae": _mae, "huber": _huber, "bce": _bce_with_logits, "weighted_bce": _weighted_bce,
    "sparse_categorical_ce": _sparse_ce, "categorical_ce": _categorical_ce, "kl_div": _kl_div,
}
for _route in ROUTES.values():
    # whether torch's kernel rejects every bad integer label itself (in [0, C) or ignore_index, on
    # the CPU): then lossplug's label check runs only to name one (sparse CE: ~35 us per call)
    _route.validates_labels = _route is _sparse_ce
"""Registry name -> ``route(module, y_pred, y_true, axis)``: torch's kernel for a reduced loss."""
