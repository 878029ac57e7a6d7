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


# The elementwise kernels are called as torch.nn.functional calls them, less its broadcasting and
# size checks (lossplug's shape check ran; ~2-3 us of a ~35 us call at 1e4 elements).
_ENUM = {"none": 0, "mean": 1, "sum": 2}


def _mse(m, x, y, axis):
    return torch._C._nn.mse_loss(x, y, _ENUM[m.reduction])


def _mae(m, x, y, axis):
    return torch._C._nn.l1_loss(x, y, _ENUM[m.reduction])


def _huber(m, x, y, axis):
    return torch._C._nn.huber_loss(x, y, _ENUM[m.reduction], m.delta)


def _bce_with_logits(m, x, y, axis, pos=1.0, neg=1.0):
    if neg == 0 or pos / neg > torch.finfo(x.dtype).max / 2:
        return None
    if m.label_smoothing:
        y = y * (1.0 - m.label_smoothing) + 0.5 * m.label_smoothing
    pw = None if pos == neg else _pos_weight(m, pos / neg, x)
    out = torch.binary_cross_entropy_with_logits(x, y, None, pw, _ENUM[m.reduction])
    return out if neg == 1.0 else neg * out


def _pos_weight(m, ratio, x):
    """``ratio`` as a tensor like ``x``'s, kept on the module for the next call (not a buffer: it
    is made again wherever the ratio, dtype or device differ)."""
    key = ratio, x.dtype, x.device
    kept = m.__dict__.get("_pos_weight_tensor")
    if kept is None or kept[0] != key:
        kept = m.__dict__["_pos_weight_tensor"] = key, torch.tensor(ratio, dtype=x.dtype, device=x.device)
    return kept[1]


def _weighted_bce(m, x, y, axis):
    return _bce_with_logits(m, x, y, axis, m.pos_weight, m.neg_weight)


def _class_weights(m, x):
    w = m._buffers.get("class_weights")  # not through nn.Module.__getattr__: this runs every call
    return None if w is None else w.to(device=x.device, dtype=x.dtype)


def _sparse_ce(m, x, labels, axis):
    if axis != 1:
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
    if m.ignore_index is not None or axis != 1:
        return None
    w = _class_weights(m, x)
    if w is None:  # torch's mean over soft targets divides by the positions, as lossplug's does
        return F.cross_entropy(x, y, label_smoothing=m.label_smoothing, reduction=m.reduction)
    total = F.cross_entropy(x, y, weight=w, label_smoothing=m.label_smoothing, reduction="sum")
    if m.reduction == "sum":
        return total
    return _core.safe_ratio(_xp, total, torch.dot(y.sum(dim=[d for d in range(y.dim()) if d != 1]), w))


def _kl_div(m, q, p, axis):
    if axis != 1:
        return None
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


def route_for(name: str, params: dict):
    """The entry of ``ROUTES`` for a loss with ``params``, or ``None`` where torch has no kernel for
    them whatever the inputs (BCE and the cross-entropies on probabilities, KL on log-inputs): such
    a loss then takes the derived kernel from the size where the composed formula is the other
    choice (``lossplug.frameworks.derived.min_numel``). An entry may still return ``None`` for some
    inputs (a class axis other than 1)."""
    route = ROUTES.get(name)
    if route is None or params.get("log_input"):  # (log inputs may hold -inf where p = 0: the
        return None  # formula's where() handles that)
    if name != "kl_div" and params.get("from_logits") is False:
        return None  # probabilities: lossplug clips p and 1 - p (and each class's p) apart
    return route
