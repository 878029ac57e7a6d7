"""Fused forward+backward kernels for the torch losses: the loss and its gradient in one pass.

Each kernel below is a plain torch function of ``(y_pred, y_true, ..., c)`` returning the loss
(float64: the sum of the terms times the scale ``c[0]``, 1/n for a mean), the gradient of that loss
with respect to ``y_pred``, and the input ranges the value checks need. ``lossplug.frameworks.compiled.Kernel``
compiles it with inductor into one loop (per row of classes for the class losses), so the inputs
are read once and the gradient written once, where torch's own losses read them in the forward,
again in the backward, and write temporaries in between. ``FusedLoss`` is the autograd function
around a kernel's result: its backward hands the gradient over.

The kernels compute the formulas of ``lossplug.formulas`` term by term (``tests/test_fast_paths.py``
checks values and gradients against the composed formula, the NumPy reference and torch.nn). When
the backward is itself differentiated (``create_graph=True``) the gradient is recomputed from the
saved input through differentiable torch ops, so double backward is exact.

Scalars (the scale, delta, eps, weights) come in one float64 tensor ``c``, not as Python floats, so
one compiled kernel serves every value.
"""

from __future__ import annotations

import torch

from lossplug.frameworks.compiled import Kernel

# --- elementwise: x, y flat; c = [scale, ...] -------------------------------------------------------


# mse, mae, huber: the loss sums terms of the gradient (scale * e**2 = g e / 2), so inductor makes the
# sum and the gradient one loop; summing (x - y)**2 directly, it makes two


def _mse(x, y, c):
    e = x - y
    g = e * (2.0 * c[0])
    return 0.5 * (g * e).sum(dtype=torch.float64), g


def _mae(x, y, c):
    e = x - y
    g = torch.sign(e) * c[0]
    return (g * e).sum(dtype=torch.float64), g


def _huber(x, y, c):  # c = [scale, delta]; with q = clamp(e): loss = q (e - q/2), no cancellation
    e = x - y
    q = torch.clamp(e, -c[1], c[1])
    g = q * c[0]
    return (g * (e - 0.5 * q)).sum(dtype=torch.float64), g


def _bce_logits(x, y, c):  # c = [scale, w+, w-, label_smoothing]
    t = y * (1.0 - c[3]) + 0.5 * c[3]
    e = torch.exp(-x.abs())  # one exp for both: softplus(+-x) = relu(+-x) + log1p(e), and sigmoid
    log1p_e, r = torch.log1p(e), 1.0 / (1.0 + e)
    sigmoid = torch.where(x >= 0, r, e * r)
    pos, neg = c[1] * t, c[2] * (1.0 - t)
    loss = neg * (torch.relu(x) + log1p_e) + pos * (torch.relu(-x) + log1p_e)
    grad = (sigmoid * (pos + neg) - pos) * c[0]
    return loss.sum(dtype=torch.float64) * c[0], grad, torch.stack([y.amin(), y.amax()])


def _bce_logits_plain(x, y, c):  # w+ = w- = c[1]: BCE, fewer operations; c as for _bce_logits
    t = y * (1.0 - c[3]) + 0.5 * c[3]
    e = torch.exp(-x.abs())
    r = 1.0 / (1.0 + e)
    # softplus(x) - t x, as two non-negative terms: no cancellation for confident logits
    loss = torch.where(x >= 0, (1.0 - t) * x, -t * x) + torch.log1p(e)
    grad = (torch.where(x >= 0, r, e * r) - t) * (c[0] * c[1])
    return loss.sum(dtype=torch.float64) * (c[0] * c[1]), grad, torch.stack([y.amin(), y.amax()])


def _bce_probs(x, y, c):  # c = [scale, w+, w-, label_smoothing, eps]; p and 1 - p clipped apart
    t = y * (1.0 - c[3]) + 0.5 * c[3]
    lo, hi = c[4], 1.0 - c[4]
    p, q = torch.clamp(x, lo, hi), torch.clamp(1.0 - x, lo, hi)
    pos, neg = c[1] * t, c[2] * (1.0 - t)
    loss = -(pos * torch.log(p) + neg * torch.log(q))
    grad_p = torch.where((x >= lo) & (x <= hi), pos / p, 0.0)  # the clip's gradient: 0 outside
    grad_q = torch.where((1.0 - x >= lo) & (1.0 - x <= hi), neg / q, 0.0)
    ranges = torch.stack([y.amin(), y.amax(), x.amin(), x.amax()])
    return loss.sum(dtype=torch.float64) * c[0], (grad_q - grad_p) * c[0], ranges


# --- class losses: x (N, C, S) logits, class axis 1 ------------------------------------------------


def _log_softmax(x):
    z = x - x.amax(1, keepdim=True)
    return z - torch.log(torch.exp(z).sum(1, keepdim=True))


def _categorical(x, y, w, c):  # c = [scale, label_smoothing]; w (1, C, 1) class weights
    t = w * (y * (1.0 - c[1]) + c[1] / x.shape[1])
    log_p = _log_softmax(x)
    loss = -(t * log_p).sum(dtype=torch.float64) * c[0]
    grad = (torch.exp(log_p) * t.sum(1, keepdim=True) - t) * c[0]
    return loss, grad, torch.stack([y.amin(), y.amax()])


def _sparse(x, labels, w, ignore, c):  # labels (N, 1, S); ignore: 0-d int64; c = [scale, ls]
    keep = labels != ignore
    safe = torch.where(keep, labels, 0)
    keep = keep.to(x.dtype)  # bool or the 0-d float64 c would promote the terms to float64
    hit = (torch.arange(x.shape[1], device=x.device).view(1, -1, 1) == safe).to(x.dtype)
    z = x - x.amax(1, keepdim=True)
    lse = torch.log(torch.exp(z).sum(1, keepdim=True))
    # the target distribution: (1 - ls) on the label plus ls / C everywhere, weighted, 0 if ignored;
    # its sum over the classes is written out, so no (N, C, S) buffer of it is kept
    t = w * (hit * (1.0 - c[1]) + c[1] / x.shape[1]) * keep
    t_sum = keep * ((1.0 - c[1]) * (w * hit).sum(1, keepdim=True) + c[1] * w.mean(1, keepdim=True))
    loss = (t * (lse - z)).sum(dtype=torch.float64) * c[0]
    grad = (torch.exp(z - lse) * t_sum - t) * c[0]
    return loss, grad, torch.stack([safe.amin(), safe.amax()])


def _kl_logits(x, p, c):  # c = [scale]
    log_q = _log_softmax(x)
    terms = torch.where(p > 0, p * (torch.log(p) - log_q), 0.0)
    grad = (torch.exp(log_q) * p.sum(1, keepdim=True) - p) * c[0]
    return terms.sum(dtype=torch.float64) * c[0], grad, torch.stack([p.amin(), p.amax()])


def _kl_probs(x, p, c):  # c = [scale, eps]; q clipped to [eps, 1]
    q = torch.clamp(x, c[1], c[1] * 0.0 + 1.0)  # both bounds tensors: a float would be specialised
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), 0.0)
    grad = torch.where((x >= c[1]) & (x <= 1.0), -p / q, 0.0) * c[0]
    ranges = torch.stack([p.amin(), p.amax(), x.amin(), x.amax()])
    return terms.sum(dtype=torch.float64) * c[0], grad, ranges


KERNELS = {fn.__name__[1:]: Kernel(fn) for fn in (
    _mse, _mae, _huber, _bce_logits, _bce_logits_plain, _bce_probs, _categorical, _sparse, _kl_logits,
    _kl_probs,
)}


class FusedLoss(torch.autograd.Function):
    """The loss of a fused kernel, whose gradient the kernel has already made.

    ``apply(x, (loss, grad), rerun, reference)``: ``rerun()`` runs the kernel again for a second
    backward through a retained graph (``None`` if it cannot run now); ``reference(x)`` is the
    reduced loss written with differentiable torch ops, for a backward that is itself
    differentiated (``create_graph=True``) or where the kernel cannot run again.
    """

    @staticmethod
    def forward(ctx, x, result, rerun, reference):
        loss, ctx.grad = result
        ctx.save_for_backward(x)
        ctx.rerun, ctx.reference = rerun, reference
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None  # handed over: autograd may keep it as x.grad, no copy
        create_graph = torch.is_grad_enabled()  # the backward is differentiated itself
        if grad is None and not create_graph:
            grad = ctx.rerun()  # None if the kernel cannot run now
        if grad is None or create_graph:
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(ctx.reference(x), x, create_graph=create_graph)
            return grad * grad_output, None, None, None
        if grad_output.item() != 1.0:  # CPU only, so no device sync
            grad = grad * grad_output
        return grad, None, None, None
