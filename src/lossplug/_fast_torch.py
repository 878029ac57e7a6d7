"""Fast paths for the torch losses, chosen by ``LossModule.forward``; the formulas stay the definition.

Two kinds, both giving the value of the composed formula in ``lossplug.formulas`` (checked in
``tests/test_fast_paths.py`` against ``lossplug.numpy`` in float64 and against the formula):

- **native kernels**: where torch has a kernel computing exactly our formula (``F.mse_loss``,
  ``F.l1_loss``, ``F.huber_loss``, ``F.binary_cross_entropy[_with_logits]`` on clipped
  probabilities, ``F.cross_entropy``, ``F.kl_div``), the reduced loss is that kernel's. Our own
  reduction rules are kept: weighted means divide by the sum of the weights, and an all-ignored
  batch gives 0, not NaN.
- **fused forward+backward** (CPU, float32/float64, one contiguous input of at least
  ``FUSED_MIN_NUMEL`` elements that requires grad, a target that does not): mse, mae, huber and
  BCE (weighted with w+ = w-) compute the loss *and* its gradient in the forward: one whole-tensor op writes
  the gradient buffer (x - y, sigmoid(x) or clip(x)), then cache-sized chunks turn it into the
  gradient in place while summing the loss, so there is one large allocation instead of
  torch's two and no separate backward pass. The backward hands that gradient over. When the
  backward is differentiated (``create_graph=True``) it recomputes the gradient from the saved
  inputs with differentiable torch ops, so double backward is exact; a second backward through
  a retained graph (``retain_graph=True``) runs the chunks again.

For BCE the value checks (ranges of y_pred and y_true) are taken inside the fused pass, chunk by
chunk, and raise the same ``ValueError`` as the composed path. ``label_class_sums`` (bottom) gives
Dice its per-class sums on integer label maps without a one-hot tensor.

None of them runs for a subclass that overrides ``terms``, for ``reduction="none"``, or where a
parameter combination has no exact kernel; then ``forward`` runs the composed formula. Under
``torch.compile`` only the native kernels are used (no custom autograd function, no graph break).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossplug import _core
from lossplug._backend import get_backend

FUSED_MIN_NUMEL = 1 << 18
"""Inputs smaller than this use the native kernels: the chunk loop only pays off on large tensors."""

CHUNK = 1 << 20
"""Elements per chunk (4 MiB of float32: a chunk's buffers stay in L3). Few chunks keep the number
of parallel regions small: on a busy machine each one can wait for a descheduled thread."""

_xp = get_backend("torch")


def fast_loss(module, y_pred: torch.Tensor, y_true: torch.Tensor):
    """The reduced loss by a fast path, or ``None`` where the composed formula must run.

    Runs the input checks itself: the shape checks first, the value checks just before a fast path
    computes (inside the fused pass for BCE: one read of the inputs instead of two). When it
    returns ``None`` no value check has run. The caller makes sure ``module.terms`` is not
    overridden.
    """
    if module.reduction == "none":
        return None
    route = _ROUTES.get(module.spec.name)
    if route is None:
        return None
    params = module.params()
    axis = _core.formula_params(module.spec, _xp, y_pred, params, "torch").get("axis")
    y_true = _core.check_shapes(module.spec, _xp, y_pred, y_true, params, axis)
    return route(module, y_pred, y_true, _Checks(module.spec, y_pred, y_true, params, axis))


class _Checks:
    """lossplug's value checks for one call: run them now, or from ranges taken in the fused pass."""

    def __init__(self, spec, y_pred, y_true, params, axis):
        self.spec, self.y_pred, self.y_true, self.params, self.axis = spec, y_pred, y_true, params, axis
        self.active = _core._VALUE_CHECKS and _xp.is_concrete(y_pred) and "from_logits" in params
        self.needs_pred = self.active and not params["from_logits"] and not params.get("log_input")

    def __call__(self):
        _core.check_values(self.spec, _xp, self.y_pred, self.y_true, self.params, self.axis)

    def from_ranges(self, ranges):
        """``ranges``: one row per chunk, ``[min y_true, max y_true, min y_pred, max y_pred]``."""
        lo = ranges[:, 0::2].amin(0).tolist()
        hi = ranges[:, 1::2].amax(0).tolist()
        known = {id(self.y_true): (lo[0], hi[0]), id(self.y_pred): (lo[1], hi[1])}
        _core.check_values(self.spec, _KnownRanges(known), self.y_pred, self.y_true, self.params, self.axis)


class _KnownRanges:
    """The backend ``_core.check_values`` needs, answering ``minmax`` from ranges already taken."""

    def __init__(self, known):
        self._known = known

    def is_concrete(self, x):
        return True

    def shape(self, x):
        return tuple(x.shape)

    def minmax(self, x):
        return self._known[id(x)]


# --- the fused chunked kernels ------------------------------------------------------------------


def _fusable(x: torch.Tensor, y: torch.Tensor) -> bool:
    return (
        torch.is_grad_enabled()
        and x.requires_grad
        and not y.requires_grad
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and y.dtype == x.dtype
        and x.numel() >= FUSED_MIN_NUMEL
        and x.is_contiguous()
        and y.is_contiguous()
    )


def _grad_formula(kind: str, x, y, opts):
    """d(elementwise loss)/dx, written with differentiable torch ops (the double-backward path)."""
    if kind == "mse":
        return 2.0 * (x - y)
    if kind == "mae":
        return torch.sign(x - y)
    if kind == "huber":
        return torch.clamp(x - y, -opts["delta"], opts["delta"])
    pos, neg = opts["pos_weight"], opts["neg_weight"]
    if kind == "bce_logits":  # d/dx [w-(1-y) softplus(x) + w+ y softplus(-x)]
        return torch.sigmoid(x) * (neg + (pos - neg) * y) - pos * y
    # bce on probabilities clipped to [eps, 1 - eps] (pos = neg): 0 outside, as the clip's gradient is
    eps = opts["eps"]
    p = torch.clamp(x, eps, 1.0 - eps)
    inside = ((x >= eps) & (x <= 1.0 - eps)).to(x.dtype)
    return inside * pos * (p - y) / (p * (1.0 - p))


def _chunk_step(kind: str, xc, yc, gc, s1, s2, s3, sums, opts):
    """One chunk: its loss sum to ``sums`` (one or two partial sums) and ``gscale * dloss/dx`` to ``gc``.

    Every per-element term is formed before it is summed (no large sums cancelling each other);
    ``s1``, ``s2``, ``s3`` are chunk-sized scratch buffers that stay in cache.
    """
    gscale = opts["gscale"]
    if kind == "mse":  # gc holds e = x - y
        torch.dot(gc, gc, out=sums[0])
        gc.mul_(2.0 * gscale)
    elif kind == "mae":  # gc holds e
        torch.linalg.vector_norm(gc, 1, out=sums[0])
        gc.sign_().mul_(gscale)
    elif kind == "huber":  # gc holds e; with q = clamp(e): loss = q (e - q/2), no cancellation
        torch.clamp(gc, -opts["delta"], opts["delta"], out=s1)
        gc.sub_(s1, alpha=0.5)
        torch.dot(s1, gc, out=sums[0])
        torch.mul(s1, gscale, out=gc)
    elif kind == "bce_logits":  # gc holds sigmoid(x); w+ = w- = w
        # max(x, 0) - y x + log1p(exp(-|x|)), torch's stable form (the loss is w times its sum)
        torch.abs(xc, out=s1)
        s1.neg_().exp_().log1p_()
        torch.clamp(xc, min=0.0, out=s2)
        s2.addcmul_(yc, xc, value=-1.0)  # first, so a confident logit cancels to exactly 0
        s1.add_(s2)
        torch.sum(s1, dim=0, out=sums[0])
        gc.sub_(yc).mul_(opts["pos_weight"] * gscale)
    else:  # bce on probabilities p = clip(x): sum of -(y log p + (1-y) log(1-p)) as two dot products
        torch.log(gc, out=s1)  # gc holds p = clip(x) until the gradient is formed
        torch.dot(yc, s1, out=sums[0])
        torch.neg(gc, out=s2).add_(1.0)  # 1 - p
        torch.log(s2, out=s1)
        torch.neg(yc, out=s3).add_(1.0)  # 1 - y
        torch.dot(s3, s1, out=sums[1])
        s2.mul_(gc)  # p (1 - p)
        torch.eq(xc, gc, out=s1)  # 1 where x was not clipped: the clip's gradient
        gc.sub_(yc).div_(s2).mul_(s1).mul_(gscale)


def _first_pass(kind, x, y, opts):
    """The gradient buffer, made by one whole-tensor op that the chunks then finish in place.

    Writing a fresh buffer chunk by chunk from several threads page-faults far more slowly than
    one parallel op does (measured: 10-30x on a 2-core VM), so the first op runs on everything.
    """
    if kind in ("mse", "mae", "huber"):
        return torch.sub(x, y)
    if kind == "bce_logits":
        return torch.sigmoid(x)
    return torch.clamp(x, opts["eps"], 1.0 - opts["eps"])


def _run_chunks(kind, x, y, scale, opts, checks=None):
    """The chunk loop: the loss sums (two per chunk) and the gradient (scaled, shaped like ``x``).

    With active ``checks``, each chunk's range is taken while it is in cache and the checks run
    on them after the loop (raising the same ``ValueError`` as before a composed computation).
    """
    flat_x, flat_y = x.view(-1), y.view(-1)
    n = flat_x.numel()
    weight = opts["neg_weight"] if kind == "bce_probs" else 1.0
    chunk_opts = dict(opts, gscale=scale * weight)
    grad = _first_pass(kind, flat_x, flat_y, opts)
    size = min(CHUNK, n)
    scratch = torch.empty(3, size, dtype=x.dtype, device=x.device)
    sums = torch.zeros((n + CHUNK - 1) // CHUNK, 2, dtype=x.dtype, device=x.device)
    checks = checks if checks is not None and checks.active else None
    ranges = torch.zeros((n + CHUNK - 1) // CHUNK, 4, dtype=x.dtype) if checks else None
    for i, start in enumerate(range(0, n, CHUNK)):
        stop = min(start + CHUNK, n)
        xc, yc = flat_x[start:stop], flat_y[start:stop]
        if checks:
            torch.aminmax(yc, out=(ranges[i, 0], ranges[i, 1]))
            if checks.needs_pred:
                torch.aminmax(xc, out=(ranges[i, 2], ranges[i, 3]))
        s1, s2, s3 = (buf[: stop - start] for buf in scratch)
        _chunk_step(kind, xc, yc, grad[start:stop], s1, s2, s3, sums[i], chunk_opts)
    if checks:
        checks.from_ranges(ranges)
    return sums, grad.view_as(x)


class _FusedElementwise(torch.autograd.Function):
    """Loss and gradient in one chunked pass over the inputs; see the module docstring."""

    @staticmethod
    def forward(ctx, x, y, kind, scale, opts, checks):
        sums, grad = _run_chunks(kind, x, y, scale, opts, checks)
        ctx.save_for_backward(x, y)
        ctx.kind, ctx.scale, ctx.opts, ctx.grad = kind, scale, opts, grad
        # the loss is scale * weight * (sum of the chunk sums); BCE on probabilities sums -loss
        weight = {"bce_logits": opts.get("neg_weight"), "bce_probs": -opts.get("neg_weight", 1.0)}
        return (sums.sum(dtype=torch.float64) * (scale * weight.get(kind, 1.0))).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None  # handed over: autograd may keep it as x.grad, no copy
        if torch.is_grad_enabled():  # create_graph: a gradient that is itself differentiable
            x, y = ctx.saved_tensors
            return _grad_formula(ctx.kind, x, y, ctx.opts) * (grad_output * ctx.scale), *(None,) * 5
        if grad is None:  # a second backward through a retained graph: the same chunks again
            x, y = ctx.saved_tensors
            grad = _run_chunks(ctx.kind, x, y, ctx.scale, ctx.opts)[1]
        if grad_output.item() != 1.0:  # CPU only, so no device sync
            grad.mul_(grad_output)
        return grad, *(None,) * 5


def _fused(kind, x, y, reduction, checks, **opts):
    """The fused kernel; the value checks run inside its pass (BCE) or before it (the others)."""
    if kind.startswith("bce"):
        return _FusedElementwise.apply(x, y, kind, 1.0 / x.numel() if reduction == "mean" else 1.0,
                                       opts, checks)
    checks()
    return _FusedElementwise.apply(x, y, kind, 1.0 / x.numel() if reduction == "mean" else 1.0,
                                   opts, None)


# --- routes: one per registry name --------------------------------------------------------------


def _mse(m, x, y, checks):
    if _fusable(x, y):
        return _fused("mse", x, y, m.reduction, checks)
    return F.mse_loss(x, y, reduction=m.reduction)


def _mae(m, x, y, checks):
    if _fusable(x, y):
        return _fused("mae", x, y, m.reduction, checks)
    return F.l1_loss(x, y, reduction=m.reduction)


def _huber(m, x, y, checks):
    if _fusable(x, y):
        return _fused("huber", x, y, m.reduction, checks, delta=m.delta)
    return F.huber_loss(x, y, reduction=m.reduction, delta=m.delta)


def _bce_like(m, x, y, checks, pos, neg):
    if not y.is_floating_point():
        y = y.to(x.dtype)
    ls = m.label_smoothing
    if m.from_logits:
        if neg == 0 or pos / neg > torch.finfo(x.dtype).max / 2:  # pos_weight=inf in the kernel: nan
            return None
        if ls == 0 and pos == neg and _fusable(x, y):  # w+ != w-: torch's kernel, below, is faster
            return _fused("bce_logits", x, y, m.reduction, checks, pos_weight=pos, neg_weight=neg)
        checks()
        if ls:
            y = y * (1.0 - ls) + 0.5 * ls
        pw = None if pos == neg else torch.tensor(pos / neg, dtype=x.dtype, device=x.device)
        out = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=m.reduction)
        return out if neg == 1.0 else neg * out
    if pos != neg:
        return None
    if ls == 0 and _fusable(x, y):
        return _fused("bce_probs", x, y, m.reduction, checks, eps=m.eps, pos_weight=pos, neg_weight=neg)
    checks()
    if ls:
        y = y * (1.0 - ls) + 0.5 * ls
    out = F.binary_cross_entropy(torch.clamp(x, m.eps, 1.0 - m.eps), y, reduction=m.reduction)
    return out if pos == 1.0 else pos * out


def _bce(m, x, y, checks):
    return _bce_like(m, x, y, checks, 1.0, 1.0)


def _weighted_bce(m, x, y, checks):
    return _bce_like(m, x, y, checks, m.pos_weight, m.neg_weight)


def _class_axis_is_1(m, x):
    return x.dim() >= 2 and _core.resolve_axis(m.axis, x.dim(), "torch") == 1


def _weights(m, x):
    return None if m.class_weights is None else m.class_weights.to(device=x.device, dtype=x.dtype)


def _sparse_ce(m, x, labels, checks):
    if not (m.from_logits and _class_axis_is_1(m, x)):
        return None  # probabilities: the formula already gathers first (N values, not N x C)
    checks()
    labels = labels.long()
    w = _weights(m, x)
    ignore = -100 if m.ignore_index is None else m.ignore_index
    if m.reduction == "mean" and w is None and m.ignore_index is None:
        return F.cross_entropy(x, labels, label_smoothing=m.label_smoothing)
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
    checks()
    w = _weights(m, x)
    total = F.cross_entropy(x, y, weight=w, label_smoothing=m.label_smoothing, reduction="sum")
    if m.reduction == "sum":
        return total
    if w is None:
        return total / (x.numel() // x.shape[1])
    per_class = y.sum(dim=[d for d in range(y.dim()) if d != 1])
    return _core._safe_ratio(_xp, total, torch.dot(per_class, w))


def _kl_div(m, q, p, checks):
    if m.log_input or not _class_axis_is_1(m, q):
        return None  # log_input may hold -inf where p = 0; the formula's where() handles that
    checks()
    log_q = F.log_softmax(q, dim=1) if m.from_logits else torch.log(torch.clamp(q, m.eps, 1.0))
    total = F.kl_div(log_q, p, reduction="sum")
    return total if m.reduction == "sum" else total / (q.numel() // q.shape[1])


_ROUTES = {
    "mse": _mse,
    "mae": _mae,
    "huber": _huber,
    "bce": _bce,
    "weighted_bce": _weighted_bce,
    "sparse_categorical_ce": _sparse_ce,
    "categorical_ce": _categorical_ce,
    "kl_div": _kl_div,
}


# --- Dice on label maps: per-class sums without a one-hot tensor ----------------------------------


def label_class_sums(p, labels, weights, num_classes: int, squared: bool):
    """Per-class Dice sums of ``p`` (class axis 1) against an integer label map, each ``(N, C)``.

    ``intersection[n, c]`` = sum of w * p_c over positions labelled c; ``p_terms`` = sum of p_c^2
    (or p_c) over all positions; ``y_terms[n, c]`` = sum of w over positions labelled c (a one-hot
    y has y^2 = y). ``weights`` (``None`` = 1) zero the positions that do not count. In eager mode
    a custom autograd function does it in a gather and two bincounts, and its backward writes the
    gradient in one multiply and one scatter; under ``torch.compile`` the same sums are composed.
    """
    n = p.shape[0]
    p3, l2 = p.reshape(n, num_classes, -1), labels.reshape(n, -1)
    w2 = None if weights is None else weights.reshape(n, -1).to(p.dtype)
    if torch.compiler.is_compiling():
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
