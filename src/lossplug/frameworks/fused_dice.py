"""Dice on integer label maps (torch, CPU): the per-class sums and their gradient as compiled kernels.

Dice needs three sums per sample and class, of ``p = activation(x)`` (softmax over the class axis,
sigmoid, or ``x`` itself) against the label map ``l`` and a 0/1 mask ``w`` of the positions that
count (``ignore_index``)::

    intersection[n, c] = sum_s w p[n, c, s] [l[n, s] == c]
    p_terms[n, c]      = sum_s (w p[n, c, s])^2      (squared; sum_s w p[n, c, s] otherwise)
    y_terms[n, c]      = sum_s w [l[n, s] == c]

Everything after them (the score, the class weights, the reductions, ``sync_dist``) works on
these small ``(N, C)`` tensors and stays in the formula. Composed from torch ops, the sums cost a
softmax pass, a gather, bincounts, a squared-sum pass, and in the backward a scatter and a softmax
backward, each reading or writing a tensor the size of ``x``. Here one compiled kernel
(``lossplug.frameworks.compiled``) reads ``x`` and the labels and gives the sums (and, for softmax, the
max and the inverse normaliser per position, all the backward needs besides ``x``); the backward is a
second compiled kernel that reads them once more and writes ``d loss / d x`` through the
activation in one pass.

Used on CPU for float32/float64 outside ``torch.compile`` (which composes the sums itself, with no
graph break) while fused kernels are on (``lossplug.fused_kernels``). When the gradient is itself
differentiated (``create_graph=True``) the backward is computed from ``x`` with differentiable
eager ops, so double backward is exact. Elsewhere the sums come from
``lossplug.frameworks.fast_torch.label_class_sums`` on the activated ``x``.
"""

from __future__ import annotations

import contextlib

import torch

from lossplug.frameworks import compiled as _compiled

_DTYPES = (torch.float32, torch.float64)


# --- the kernels: plain torch functions, compiled by lossplug.frameworks.compiled.Kernel ---------------------


def _sums(p, labels, w):
    """The four sums of ``p`` (N, C, S): intersection, sum of w p, sum of (w p)^2, label counts."""
    hit = labels[:, None, :] == torch.arange(p.shape[1], device=p.device)[None, :, None]
    if w is None:
        return (torch.where(hit, p, 0.0).sum(-1), p.sum(-1), (p * p).sum(-1),
                hit.sum(-1).to(p.dtype))
    pw = p * w[:, None, :]
    return (torch.where(hit, pw, 0.0).sum(-1), pw.sum(-1), (pw * pw).sum(-1),
            torch.where(hit, w[:, None, :], 0.0).sum(-1))


def _grad_terms(p, labels, w, g_inter, g_lin, g_sq):
    """``(a, b, s)`` with d loss / d p = a + b + s p, from the gradients of the sums, each (N, C)."""
    hit = labels[:, None, :] == torch.arange(p.shape[1], device=p.device)[None, :, None]
    a, b, s = torch.where(hit, g_inter[..., None], 0.0), g_lin[..., None], 2.0 * g_sq[..., None]
    if w is None:
        return a, b, s
    w3 = w[:, None, :]
    return a * w3, b * w3, s * (w3 * w3)


def softmax_forward(x, labels, w):
    """The sums, and the softmax's max m and 1 / sum exp(x - m) per position (for the backward)."""
    m = x.amax(1, keepdim=True)
    e = torch.exp(x - m)
    rz = 1.0 / e.sum(1, keepdim=True)
    return (*_sums(e * rz, labels, w), m.squeeze(1), rz.squeeze(1))


def softmax_backward(x, stats, labels, w, g_inter, g_lin, g_sq):
    """``stats=None`` recomputes the softmax with differentiable ops (the double-backward path).

    With g = a + b + s p: d loss / d x = p (g - sum_c p g), written out so that inductor keeps
    only p between the reduction over classes and the output (one temporary, not two).
    """
    if stats is None:
        p = torch.softmax(x, 1)
    else:
        p = torch.exp(x - stats[0][:, None, :]) * stats[1][:, None, :]
    a, b, s = _grad_terms(p, labels, w, g_inter, g_lin, g_sq)
    dot = (p * (a + b + s * p)).sum(1, keepdim=True)
    return p * a + p * (b - dot) + s * p * p


def sigmoid_forward(x, labels, w):
    return _sums(torch.sigmoid(x), labels, w)


def sigmoid_backward(x, stats, labels, w, g_inter, g_lin, g_sq):
    p = torch.sigmoid(x)
    a, b, s = _grad_terms(p, labels, w, g_inter, g_lin, g_sq)
    return (a + b + s * p) * (p * (1.0 - p))


def identity_forward(x, labels, w):
    return _sums(x, labels, w)


def identity_backward(x, stats, labels, w, g_inter, g_lin, g_sq):
    a, b, s = _grad_terms(x, labels, w, g_inter, g_lin, g_sq)
    return a + b + s * x


_KERNELS = {
    name: (_compiled.Kernel(fwd), _compiled.Kernel(bwd))
    for name, fwd, bwd in (
        ("softmax", softmax_forward, softmax_backward),
        ("sigmoid", sigmoid_forward, sigmoid_backward),
        (None, identity_forward, identity_backward),
    )
}


def _run(kernel, *args):
    """The compiled kernel, or the same function eagerly where it cannot run compiled.

    That is (``Kernel.run`` gives ``None``): fused kernels switched off since the forward,
    compiling failed, or dynamo refused one more specialisation of an already compiled kernel (its
    recompile limit, 8 by default, is hit after many distinct dtype / mask / size-1 / equal-size
    patterns). Errors of the computation itself are raised by the eager call.
    """
    out = kernel.run(*args)
    if out is not None:
        return out
    with torch.autocast("cpu", enabled=False):  # autocast would lower parts of it to bf16
        return kernel.fn(*args)


class _FusedLabelSums(torch.autograd.Function):
    """``(intersection, sum w p, sum (w p)^2, y_terms)`` of ``activation(x)``, each (N, C)."""

    @staticmethod
    def forward(ctx, x, labels, w, activation):
        forward_kernel = _KERNELS[activation][0]
        # detached: one compilation with or without grad, and no guards on the views' bases
        out = _run(forward_kernel, x.detach(), labels.detach(), None if w is None else w.detach())
        sums, stats = out[:4], out[4:]  # stats: what the softmax backward needs besides x
        ctx.save_for_backward(x, labels, w, *stats)
        ctx.activation = activation
        ctx.mark_non_differentiable(sums[3])
        return tuple(sums)

    @staticmethod
    def backward(ctx, g_inter, g_lin, g_sq, _g_y_terms):
        x, labels, w, *stats = ctx.saved_tensors
        backward_kernel = _KERNELS[ctx.activation][1]
        grads = [g.contiguous() for g in (g_inter, g_lin, g_sq)]  # one stride pattern: one compilation
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient, eager
            return backward_kernel.fn(x, None, labels, w, *grads), None, None, None
        w = None if w is None else w.detach()
        return _run(backward_kernel, x.detach(), tuple(stats), labels.detach(), w, *grads), None, None, None


class DeferredLabelCheck:
    """The label check of one Dice call on a label map, judged from the fused kernel's label counts.

    Set by the Dice route of ``lossplug.frameworks.fast_torch`` (``deferred_label_check``). Where the fused
    kernel runs, every counted position has a label in ``[0, C)`` exactly when the per-class label
    counts ``y_terms`` add up to the number of counted positions: ``labels_in_range`` says whether
    they do, with no pass over the labels besides the kernel's (exact while a sample has fewer than
    2**24 positions, so that float32 counts are integers). Elsewhere ``check()`` runs the usual
    checks first: the composed sums index by label.
    """

    def __init__(self, check):
        self.check, self.labels_in_range, self.checked = check, None, False


_deferred: DeferredLabelCheck | None = None


@contextlib.contextmanager
def deferred_label_check(check):
    global _deferred
    previous, _deferred = _deferred, DeferredLabelCheck(check)
    try:
        yield _deferred
    finally:
        _deferred = previous


def _fusable(x: torch.Tensor, activation) -> bool:
    """Whether the compiled kernels run: fused kernels usable (on, eager mode, no ``torch.func``
    transform), neither kernel failed to compile (then the composed sums run, not these functions
    eagerly: they build an (N, C, S) mask), a non-empty CPU float32/float64 ``x``."""
    return (
        _compiled.usable()
        and all(kernel.failure is None for kernel in _KERNELS[activation])
        and x.device.type == "cpu"
        and x.dtype in _DTYPES
        and x.dim() >= 2
        and x.numel() > 0
    )


def activate(x: torch.Tensor, activation):
    """``activation(x)`` along the class axis 1: "softmax", "sigmoid" or ``None`` (x itself)."""
    if activation == "softmax":
        return torch.softmax(x, 1)
    return torch.sigmoid(x) if activation == "sigmoid" else x


def label_class_sums(x, labels, weights, num_classes: int, squared: bool, activation=None):
    """Per-class Dice sums ``(intersection, p_terms, y_terms)``, each (N, C), of ``activation(x)``.

    ``x`` has the class axis 1, ``labels`` is ``x``'s shape without it (integers in ``[0, C)``),
    ``weights`` a 0/1 mask of the positions that count, shaped like ``labels``, or ``None``.
    """
    deferred = _deferred
    n = x.shape[0]
    if deferred is not None and not (_fusable(x, activation) and labels.numel() // max(n, 1) < 2**24):
        deferred.check()  # the composed sums index by label (or counts could round): check first
        deferred.checked = True
    if _fusable(x, activation):
        x3, l2 = x.reshape(n, num_classes, -1), labels.reshape(n, -1)
        w2 = None if weights is None else weights.reshape(n, -1).to(x.dtype)
        inter, p_lin, p_sq, y_terms = _FusedLabelSums.apply(x3, l2, w2, activation)
        if deferred is not None and not deferred.checked:
            # every counted position has a label in [0, C) iff the per-class counts add up to them
            counted = l2.numel() if w2 is None else w2.sum(dtype=torch.float64).item()
            deferred.labels_in_range = y_terms.sum(dtype=torch.float64).item() == counted
        return inter, (p_sq if squared else p_lin), y_terms
    from lossplug.frameworks.fast_torch import label_class_sums as composed_sums

    p = activate(x, activation)
    if weights is not None:
        p = p * weights.unsqueeze(1).to(p.dtype)
    return composed_sums(p, labels, weights, num_classes, squared)
