"""Fast paths for the torch losses, chosen by ``LossModule.forward``; the formulas stay the definition.

Two kinds, both giving the value of the composed formula in ``lossplug.formulas`` (checked in
``tests/test_fast_paths.py`` against ``lossplug.numpy`` in float64 and against torch.nn):

- **fused kernels** (``lossplug.frameworks.fused_torch``): where the input needs a gradient, is on the CPU,
  float32/float64, contiguous and has at least ``FUSED_MIN_NUMEL[kernel]`` elements, one compiled kernel
  computes the loss, its gradient and the value checks' ranges in a single pass; the backward hands
  that gradient over. mse, mae, huber, bce and weighted_bce (logits and probabilities, with label
  smoothing), categorical_ce and sparse_categorical_ce on logits (class weights, ignore_index,
  label smoothing) and kl_div (logits and probabilities).
- **native kernels**: otherwise, where torch has a kernel computing exactly our formula
  (``F.mse_loss``, ``F.l1_loss``, ``F.huber_loss``, ``F.binary_cross_entropy[_with_logits]``,
  ``F.cross_entropy``, ``F.kl_div``), the reduced loss is that kernel's. Our own reduction rules
  are kept: weighted means divide by the sum of the weights, and an all-ignored batch gives 0.

The fused kernels take the value checks' ranges inside their pass, so a bad input raises the same
``ValueError`` as the composed path, after the kernel ran but before anything is returned.
``label_class_sums`` (bottom) gives Dice its per-class sums on integer label maps without a one-hot.

None of them runs for a subclass that overrides ``terms``, for ``reduction="none"``, or where a
parameter combination has no exact kernel; then ``forward`` runs the composed formula. Under
``torch.compile`` only the native kernels are used (no custom autograd function, no graph break).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossplug import core as _core
from lossplug.frameworks import compiled as _compiled
from lossplug.frameworks import fused_dice as _fused_dice
from lossplug.frameworks.fused_torch import KERNELS, FusedLoss
from lossplug.frameworks.ops import get_backend

FUSED_MIN_NUMEL = {
    "mse": 1 << 20, "huber": 1 << 19, "mae": 1 << 17, "bce_logits": 1 << 18, "bce_logits_plain": 1 << 18,
    "bce_probs": 1 << 14, "categorical": 1 << 14, "sparse": 1 << 14, "kl_logits": 1 << 14,
    "kl_probs": 1 << 14,
}
"""Below these sizes (elements of ``y_pred``) the native kernels run: calling a compiled kernel costs
~0.1 ms more, and torch's kernels are fast while the inputs fit in the CPU caches. Measured with one
thread (``python -m benchmarks``); BCE on probabilities has no exact native kernel."""

_xp = get_backend("torch")


def fast_loss(module, y_pred: torch.Tensor, y_true: torch.Tensor):
    """The reduced loss by a fast path, or ``None`` where the composed formula must run.

    Runs the input checks itself: the shape checks first, the value checks just before a native
    kernel computes, or on the ranges a fused kernel took. When it returns ``None`` no value check
    has run. The caller makes sure ``module.terms`` is not overridden.
    """
    if module.reduction == "none":
        return None
    route = _ROUTES.get(module.spec.name)
    if route is None:
        return None
    # no module.params() dict here: this runs on every call, and a small step feels every 10 us
    spec, axis = module.spec, None
    if spec.has_class_axis:  # as _core.formula_params resolves it
        axis = _core.resolve_axis(module.axis, y_pred.dim(), "torch") if y_pred.dim() else 0
    shape_params = {"class_weights": module._buffers.get("class_weights"),
                    "per_class": module.__dict__.get("per_class", False)}
    y_true = _core.check_shapes(spec, _xp, y_pred, y_true, shape_params, axis)
    return route(module, y_pred, y_true, _Checks(module, y_pred, y_true, axis))


class _Checks:
    """lossplug's value checks for one call: run them now, or on ranges a fused kernel took."""

    __slots__ = ("module", "y_pred", "y_true", "axis", "active")

    def __init__(self, module, y_pred, y_true, axis):
        self.module, self.y_pred, self.y_true, self.axis = module, y_pred, y_true, axis
        self.active = _core._VALUE_CHECKS and _xp.is_concrete(y_pred)

    def __call__(self, ranges=None):
        m = self.module
        _core.check_values(m.spec, _xp, self.y_pred, self.y_true, m.params(), self.axis, ranges)

    def from_kernel(self, ranges: torch.Tensor):
        """``ranges`` = ``[min y_true, max y_true]`` or ``[..., min y_pred, max y_pred]``."""
        if not _core._VALUE_CHECKS:
            return
        v = ranges.tolist()
        self({"y_true": (v[0], v[1]), **({"y_pred": (v[2], v[3])} if len(v) == 4 else {})})


# --- the fused kernels --------------------------------------------------------------------------


def _fusable(kind: str, x: torch.Tensor, y: torch.Tensor) -> bool:
    return (
        x.numel() >= FUSED_MIN_NUMEL[kind]
        and _compiled.usable()
        and torch.is_grad_enabled()
        and x.requires_grad
        and not y.requires_grad
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and (y.dtype == x.dtype or not y.is_floating_point())
        and x.is_contiguous()
        and y.is_contiguous()
    )


def _fused(kind, x, inputs, consts, checks, reference):
    """The loss by the fused kernel ``kind`` on ``inputs`` (``x`` detached first), or ``None``.

    ``consts[0]`` scales the loss sum and the gradient (1/n for a mean); ``reference(x)`` is the
    reduced loss in differentiable torch ops, for double backward.
    """
    kernel = KERNELS[kind]

    def run():
        # detached: no autograd guards, and views' bases add no guards (fewer recompilations)
        return kernel.run(x.view(inputs[0].shape).detach(), *(t.detach() for t in inputs[1:]), consts)

    out = run()
    if out is None:
        return None
    if len(out) > 2:
        checks.from_kernel(out[2])

    def rerun():
        again = run()
        return None if again is None else again[1].view_as(x)

    return FusedLoss.apply(x, (out[0].to(x.dtype), out[1].view_as(x)), rerun, reference)


def _consts(scale, *values):
    """The kernels' float64 constants: ``scale`` (a float or a 0-d tensor) first, then ``values``."""
    c = torch.tensor((0.0, *values), dtype=torch.float64)
    c[0] = scale
    return c


def _mean_scale(reduction, n):
    return 1.0 / n if reduction == "mean" else 1.0


# --- routes: one per registry name --------------------------------------------------------------


def _regression(kind, native, *param_names):
    """The route of mse, mae or huber: the fused kernel ``kind``, else ``native(m, x, y)``."""
    def route(m, x, y, checks):
        if _fusable(kind, x, y):
            c = _consts(_mean_scale(m.reduction, x.numel()), *(getattr(m, k) for k in param_names))
            fused = _fused(kind, x, (x.view(-1), y.view(-1)), c, checks, lambda x: native(m, x, y))
            if fused is not None:
                return fused
        return native(m, x, y)
    return route


_mse = _regression("mse", lambda m, x, y: F.mse_loss(x, y, reduction=m.reduction))
_mae = _regression("mae", lambda m, x, y: F.l1_loss(x, y, reduction=m.reduction))
_huber = _regression(
    "huber", lambda m, x, y: F.huber_loss(x, y, reduction=m.reduction, delta=m.delta), "delta"
)


def _composed(m, y):
    """The reduced composed formula as a function of ``y_pred``: the double-backward reference."""
    def reference(x):
        loss, weight = m._terms(_xp, x, y)
        return _core.reduce(m.spec, _xp, loss, weight, m.reduction, "torch")
    return reference


def _bce_like(m, x, y, checks, pos, neg):
    if not y.is_floating_point():
        y = y.to(x.dtype)
    ls = m.label_smoothing
    if _fusable("bce_logits" if m.from_logits else "bce_probs", x, y):  # bce_logits_plain: the same size
        scale = _mean_scale(m.reduction, x.numel())
        if m.from_logits:
            kind, c = "bce_logits" if pos != neg else "bce_logits_plain", _consts(scale, pos, neg, ls)
        else:
            kind, c = "bce_probs", _consts(scale, pos, neg, ls, m.eps)
        fused = _fused(kind, x, (x.view(-1), y.view(-1)), c, checks, _composed(m, y))
        if fused is not None:
            return fused
    if m.from_logits:
        if neg == 0 or pos / neg > torch.finfo(x.dtype).max / 2:  # pos_weight=inf in the kernel: nan
            return None
        checks()
        if ls:
            y = y * (1.0 - ls) + 0.5 * ls
        pw = None if pos == neg else torch.tensor(pos / neg, dtype=x.dtype, device=x.device)
        out = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=m.reduction)
        return out if neg == 1.0 else neg * out
    return None  # probabilities: the formula clips p and 1 - p apart; torch's kernel cannot


def _bce(m, x, y, checks):
    return _bce_like(m, x, y, checks, 1.0, 1.0)


def _weighted_bce(m, x, y, checks):
    return _bce_like(m, x, y, checks, m.pos_weight, m.neg_weight)


def _class_axis_is_1(m, x):
    return x.dim() >= 2 and _core.resolve_axis(m.axis, x.dim(), "torch") == 1


def _weights(m, x):
    return None if m.class_weights is None else m.class_weights.to(device=x.device, dtype=x.dtype)


def _by_class(x):
    """``x`` as ``(N, C, S)``: the class axis 1 in the middle, the positions flattened."""
    return x.view(x.shape[0], x.shape[1], -1)


def _sparse_ce(m, x, labels, checks):
    if not (m.from_logits and _class_axis_is_1(m, x)):
        return None  # probabilities: the formula already gathers first (N values, not N x C)
    w = _weights(m, x)
    ignore = _NO_LABEL if m.ignore_index is None else m.ignore_index
    if not labels.is_floating_point() and _fusable("sparse", x, labels):  # float labels: checked, then cast
        labels = labels.long()
        if m.reduction == "sum":
            scale = 1.0
        elif w is None and m.ignore_index is None:
            scale = 1.0 / labels.numel()
        else:  # the weighted mean divides by the weights of the kept labels
            keep = labels != ignore
            # clamped: a label out of range must reach the kernel's range check, not an IndexError
            safe = torch.where(keep, labels, 0).clamp(0, x.shape[1] - 1)
            den = keep.sum() if w is None else (w.double()[safe] * keep).sum()
            scale = torch.where(den > 0, 1.0 / den.double(), 0.0)
        n, k = x.shape[0], x.shape[1]
        ws = (torch.ones(k, dtype=x.dtype) if w is None else w).view(1, k, 1)
        inputs = (_by_class(x), labels.view(n, 1, -1), ws, torch.tensor(ignore))
        fused = _fused("sparse", x, inputs, _consts(scale, m.label_smoothing), checks,
                       _composed(m, labels))
        if fused is not None:
            return fused
    if labels.is_floating_point() or x.device.type != "cpu" or not checks.active:
        checks()
        return _native_sparse_ce(m, x, labels.long(), w, ignore)
    # Integer labels on the CPU: torch's kernel validates them itself (each in [0, C) or equal to
    # ignore_index, the rule of our check), so the check's own pass runs only to name a bad label.
    try:
        return _native_sparse_ce(m, x, labels.long(), w, ignore)
    except (IndexError, RuntimeError) as exc:
        error = exc
    checks()  # raises the ValueError naming the label
    raise error


_NO_LABEL = -(2**63)
"""The ``ignore_index`` handed to torch (and the fused kernel) when there is none: torch's default,
-100, would silently drop labels of -100 that lossplug's check rejects."""


def _native_sparse_ce(m, x, labels, w, ignore):
    if m.reduction == "mean" and w is None and m.ignore_index is None:
        return F.cross_entropy(x, labels, ignore_index=_NO_LABEL, label_smoothing=m.label_smoothing)
    total = F.cross_entropy(
        x, labels, weight=w, ignore_index=ignore, label_smoothing=m.label_smoothing, reduction="sum"
    )
    if m.reduction == "sum":
        return total
    keep = labels != ignore
    safe = torch.where(keep, labels, 0)
    den = keep.sum().to(x.dtype) if w is None else (w[safe] * keep).sum()
    return _core._safe_ratio(_xp, total, den)


def _categorical_ce(m, x, y, checks):
    if not (m.from_logits and m.ignore_index is None and _class_axis_is_1(m, x)):
        return None
    w = _weights(m, x)
    den = None
    if m.reduction == "mean":
        if w is None:
            den = x.numel() // x.shape[1]
        else:
            den = torch.dot(y.sum(dim=[d for d in range(y.dim()) if d != 1]), w)
    if _fusable("categorical", x, y):
        if den is None:
            scale = 1.0
        elif w is None:
            scale = 1.0 / den
        else:
            scale = torch.where(den > 0, 1.0 / den.double(), 0.0)
        k = x.shape[1]
        ws = (torch.ones(k, dtype=x.dtype) if w is None else w).view(1, k, 1)
        fused = _fused("categorical", x, (_by_class(x), _by_class(y), ws),
                       _consts(scale, m.label_smoothing), checks, _composed(m, y))
        if fused is not None:
            return fused
    checks()
    total = F.cross_entropy(x, y, weight=w, label_smoothing=m.label_smoothing, reduction="sum")
    if den is None:
        return total
    return total / den if w is None else _core._safe_ratio(_xp, total, den)


def _kl_div(m, q, p, checks):
    if m.log_input or not _class_axis_is_1(m, q):
        return None  # log_input may hold -inf where p = 0; the formula's where() handles that
    if _fusable("kl_logits" if m.from_logits else "kl_probs", q, p):
        scale = _mean_scale(m.reduction, q.numel() // q.shape[1])
        if m.from_logits:
            kind, c = "kl_logits", _consts(scale)
        else:
            kind, c = "kl_probs", _consts(scale, m.eps)
        fused = _fused(kind, q, (_by_class(q), _by_class(p)), c, checks, _composed(m, p))
        if fused is not None:
            return fused
    checks()
    log_q = F.log_softmax(q, dim=1) if m.from_logits else torch.log(torch.clamp(q, m.eps, 1.0))
    total = F.kl_div(log_q, p, reduction="sum")
    return total if m.reduction == "sum" else total / (q.numel() // q.shape[1])


def _dice(m, x, labels, checks):
    """Dice on an integer label map: the labels judged from the fused kernel's per-class counts."""
    if (labels.dim() == x.dim() or labels.is_floating_point() or not checks.active
            or not _class_axis_is_1(m, x) or x.shape[1] < 2):
        return None  # masks, float labels, no checks, or sums not by label_class_sums: as composed
    with _fused_dice.deferred_label_check(checks) as deferred:
        loss, weight = m._terms(_xp, x, labels)
    if deferred.labels_in_range:
        checks({"y_true": (0, 0)})  # the labels are in range (counted by the kernel); y_pred's checks
    elif not deferred.checked:
        checks()  # a label out of range: the usual check finds it and names it
    return _core.reduce(m.spec, _xp, loss, weight, m.reduction, "torch")


_ROUTES = {
    "mse": _mse,
    "mae": _mae,
    "huber": _huber,
    "bce": _bce,
    "weighted_bce": _weighted_bce,
    "sparse_categorical_ce": _sparse_ce,
    "categorical_ce": _categorical_ce,
    "kl_div": _kl_div,
    "dice": _dice,
}


# --- Dice on label maps: per-class sums without a one-hot tensor ----------------------------------


def label_class_sums(p, labels, weights, num_classes: int, squared: bool):
    """Per-class Dice sums of ``p`` (class axis 1) against an integer label map, each ``(N, C)``.

    ``intersection[n, c]`` = sum of w * p_c over positions labelled c; ``p_terms`` = sum of p_c^2
    (or p_c) over all positions; ``y_terms[n, c]`` = sum of w over positions labelled c (a one-hot
    y has y^2 = y). ``weights`` (``None`` = 1) zero the positions that do not count. In eager mode
    a custom autograd function does it in a gather and two bincounts, and its backward writes the
    gradient in one multiply and one scatter; under ``torch.compile`` and ``torch.func`` transforms
    the same sums are composed.
    """
    n = p.shape[0]
    p3, l2 = p.reshape(n, num_classes, -1), labels.reshape(n, -1)
    w2 = None if weights is None else weights.reshape(n, -1).to(p.dtype)
    if torch.compiler.is_compiling() or _compiled.functorch_active():
        at = p3.gather(1, l2[:, None]).squeeze(1)
        ones = w2 if w2 is not None else torch.ones_like(at)
        zeros = p3.new_zeros((n, num_classes))
        inter = zeros.scatter_add(1, l2, at if w2 is None else at * w2)
        p_terms = (p3 * p3).sum(-1) if squared else p3.sum(-1)
        return inter, p_terms, zeros.scatter_add(1, l2, ones)
    return _LabelClassSums.apply(p3, l2, w2, squared)


class _LabelClassSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p3, l2, w2, squared):
        n, c, _ = p3.shape
        at = p3.gather(1, l2[:, None]).reshape(n, -1)
        if w2 is not None:
            at = at * w2
        index = (l2 + c * torch.arange(n, device=l2.device)[:, None]).reshape(-1)
        flat_w = None if w2 is None else w2.reshape(-1)
        inter = torch.bincount(index, at.reshape(-1), n * c).to(p3.dtype).view(n, c)
        y_terms = torch.bincount(index, flat_w, n * c).to(p3.dtype).view(n, c)
        with torch.autocast(p3.device.type, enabled=False):  # autocast would run einsum in bf16/fp16
            p_terms = torch.einsum("ncs,ncs->nc", p3, p3) if squared else p3.sum(-1)
        ctx.save_for_backward(p3, l2, w2)
        ctx.squared = squared
        ctx.mark_non_differentiable(y_terms)
        return inter, p_terms, y_terms

    @staticmethod
    def backward(ctx, g_inter, g_p_terms, _g_y_terms):
        # written with differentiable ops, so create_graph=True (double backward) works
        p3, l2, w2 = ctx.saved_tensors
        if ctx.squared:
            grad = p3 * (2.0 * g_p_terms)[..., None]
        else:
            grad = g_p_terms[..., None].expand_as(p3).clone()
        at_label = g_inter.gather(1, l2)
        if w2 is not None:
            at_label = at_label * w2
        return grad.scatter_add(1, l2[:, None], at_label[:, None]), None, None, None
