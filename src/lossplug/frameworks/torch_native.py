"""torch's own loss kernels, for inputs too small for a compiled kernel to pay off.

Below ``lossplug.frameworks.derived.NATIVE_UP_TO`` elements (and without a gradient), where
torch has a kernel computing exactly a formula of ``lossplug.formulas`` with the module's
parameters, that kernel runs (``docs/benchmarks.md`` has the measurements). Each entry binds the
module's parameters to a function giving the reduced loss (``"mean"`` by lossplug's rule: weighted
means divide by the weights of the counted targets, 0 if none counts), or gives ``None`` where its
kernel does not express them;
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


def _mse(m, x, axis):
    kernel, reduction = torch._C._nn.mse_loss, _ENUM[m.reduction]
    return lambda x, y: kernel(x, y, reduction)


def _mae(m, x, axis):
    kernel, reduction = torch._C._nn.l1_loss, _ENUM[m.reduction]
    return lambda x, y: kernel(x, y, reduction)


def _huber(m, x, axis):
    kernel, reduction, delta = torch._C._nn.huber_loss, _ENUM[m.reduction], m.delta
    return lambda x, y: kernel(x, y, reduction, delta)


def _bce_with_logits(m, x, axis, pos=1.0, neg=1.0):
    if neg == 0 or pos / neg > torch.finfo(x.dtype).max / 2:
        return None
    kernel, reduction = torch.binary_cross_entropy_with_logits, _ENUM[m.reduction]
    smoothing = m.label_smoothing
    pw = None if pos == neg else torch.tensor(pos / neg, dtype=x.dtype, device=x.device)
    if smoothing:
        def run(x, y):
            return kernel(x, y * (1.0 - smoothing) + 0.5 * smoothing, None, pw, reduction)
    else:
        def run(x, y):
            return kernel(x, y, None, pw, reduction)
    return run if neg == 1.0 else lambda x, y: neg * run(x, y)


def _weighted_bce(m, x, axis):
    return _bce_with_logits(m, x, axis, m.pos_weight, m.neg_weight)


def _class_weights(m, x):
    """The module's class weights in ``x``'s dtype, read at each call (``load_state_dict`` copies
    new ones into the buffer in place)."""
    w = m._buffers.get("class_weights")  # not through nn.Module.__getattr__
    return None if w is None else w.to(device=x.device, dtype=x.dtype)


def _sparse_ce(m, x, axis):
    if axis != 1:
        return None
    ignore = _NO_LABEL if m.ignore_index is None else m.ignore_index
    smoothing, reduction = m.label_smoothing, m.reduction
    if reduction == "mean" and m._buffers.get("class_weights") is None and m.ignore_index is None:
        return lambda x, labels: F.cross_entropy(
            x, labels.long(), ignore_index=_NO_LABEL, label_smoothing=smoothing)

    def run(x, labels):
        w, labels = _class_weights(m, x), labels.long()
        total = F.cross_entropy(
            x, labels, weight=w, ignore_index=ignore, label_smoothing=smoothing, reduction="sum"
        )
        if reduction == "sum":
            return total
        keep = labels != ignore
        den = keep.sum().to(x.dtype) if w is None else (w[torch.where(keep, labels, 0)] * keep).sum()
        return _core.safe_ratio(_xp, total, den)

    return run


def _categorical_ce(m, x, axis):
    if m.ignore_index is not None or axis != 1:
        return None
    smoothing, reduction = m.label_smoothing, m.reduction
    if m._buffers.get("class_weights") is None:  # torch's mean over soft targets divides by the positions
        return lambda x, y: F.cross_entropy(x, y, label_smoothing=smoothing, reduction=reduction)

    def run(x, y):
        w = _class_weights(m, x)
        total = F.cross_entropy(x, y, weight=w, label_smoothing=smoothing, reduction="sum")
        if reduction == "sum":
            return total
        return _core.safe_ratio(_xp, total, torch.dot(y.sum(dim=[d for d in range(y.dim()) if d != 1]), w))

    return run


def _kl_div(m, q, axis):
    if axis != 1:
        return None
    from_logits, eps, reduction = m.from_logits, m.eps, m.reduction

    def run(q, p):
        log_q = F.log_softmax(q, dim=1) if from_logits else torch.log(torch.clamp(q, eps, 1.0))
        total = F.kl_div(log_q, p, reduction="sum")
        return total if reduction == "sum" else total / (q.numel() // q.shape[1])

    return run


ROUTES = {
    "mse": _mse, "mae": _mae, "huber": _huber, "bce": _bce_with_logits, "weighted_bce": _weighted_bce,
    "sparse_categorical_ce": _sparse_ce, "categorical_ce": _categorical_ce, "kl_div": _kl_div,
}
for _route in ROUTES.values():
    # whether torch's kernel rejects every bad integer label itself (in [0, C) or ignore_index, on
    # the CPU): then lossplug's label check runs only to name one (sparse CE: ~35 us per call)
    _route.validates_labels = _route is _sparse_ce
"""Registry name -> ``bind(module, y_pred, axis)``: ``run(y_pred, y_true)``, torch's kernel of the
reduced loss for inputs of ``y_pred``'s dtype and device and class axis ``axis``, with the module's
parameters as they are now (a call plan keeps it until one changes), or ``None`` where the kernel
does not express them."""


def route_for(name: str, params: dict):
    """The entry of ``ROUTES`` for a loss with ``params``, or ``None`` where torch has no kernel for
    them whatever the inputs (BCE and the cross-entropies on probabilities, KL on log-inputs): such
    a loss then takes the derived kernel from the size where the composed formula is the other
    choice (``lossplug.frameworks.derived.min_numel``). An entry may still bind ``None`` for some
    inputs (a class axis other than 1)."""
    route = ROUTES.get(name)
    if route is None or params.get("log_input"):  # (log inputs may hold -inf where p = 0: the
        return None  # formula's where() handles that)
    if name != "kl_div" and params.get("from_logits") is False:
        return None  # probabilities: lossplug clips p and 1 - p (and each class's p) apart
    return route
