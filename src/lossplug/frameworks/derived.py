"""Forward+backward kernels derived from the formulas by torch's own compiler.

Nothing of any loss is written here. For a torch loss module ``m`` (a subclass included) the kernel
is the compiled form (``lossplug.frameworks.compiled``: a trace compiled by inductor for lossplug's
own classes, ``torch.compile`` for a subclass) of

    grad, value = torch.func.grad_and_value(lambda x: reduce(m.terms(x, y)))(x)

together with the input ranges the value checks need, all in one compiled function: inductor fuses
the formula, its gradient (which autograd derives) and the range reductions into a few loops that
read the inputs once and write the gradient once (on the CPU C++/OpenMP loops, on a GPU Triton
kernels). ``DerivedLoss`` hands the gradient to autograd; a backward that is itself differentiated
(``create_graph=True``) goes through the composed formula again, so double backward is exact.

Each loss class and parameter set gets a compiled function of its own (its own code object, so
torch.compile's per-function recompile limit counts the dtypes and layouts of one loss) made on
first use. If compiling fails, lossplug warns once and that loss runs the composed formula from
then on; see ``lossplug.frameworks.compiled``. Which sizes take the kernel: ``min_numel``.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import torch

from lossplug.frameworks import compiled
from lossplug.frameworks.ops import get_backend

_xp = get_backend("torch")
_DTYPES = (torch.float32, torch.float64)
_DEVICES = ("cpu", "cuda")

DERIVED_MIN_NUMEL = 1 << 16
"""From this many elements of ``y_pred`` on the derived kernel runs where torch has no kernel of the
loss and the kernel is called through dynamo (a subclass's own formula: ~150 us a call before it
does any work); below it the composed formula."""

TRACED_MIN_NUMEL = 1 << 12
"""The same for lossplug's own classes (Dice and the overlap losses, BCE on probabilities, focal,
log-cosh, Poisson, hinge, cosine), whose traced kernel is called without dynamo (~80 us): their
composed formulas are 5 to 25 eager ops forward and backward, and at 4096 elements the kernel takes
0.4x (Dice, focal, BCE on probabilities) to 0.9x (Poisson) of their time, at 256 already 0.3x-0.94x.
Lowering ``DERIVED_MIN_NUMEL`` below it lowers this too."""


class ByClasses(NamedTuple):
    """A class loss's sizes on the CPU: ``rows``, ``(below, size)`` pairs for 2-D ``(N, C)`` input
    (the first whose ``below`` exceeds C, or is ``None``, applies; a size of ``None``: never), and
    ``spatial`` for segmentation input ``(N, C, ...)``."""

    rows: tuple
    spatial: int


def float_lanes(capability: str) -> int:
    """float32 lanes of ATen's CPU vectors for ``torch.backends.cpu.get_cpu_capability()``."""
    return 16 if capability.startswith("AVX512") else 8


LANES = float_lanes(torch.backends.cpu.get_cpu_capability())
"""Below this many classes torch's CPU ``log_softmax`` over the last axis runs a scalar loop."""

NATIVE_UP_TO = {
    "elementwise": 1 << 21, "positions": 1 << 19, "bce": 1 << 16, "weighted_bce": 1 << 16,
    "sparse_categorical_ce": ByClasses(((3, 1 << 15), (LANES, 1 << 13), (None, 1 << 19)), 1 << 18),
    "categorical_ce": ByClasses(((3, None), (LANES, 1 << 13), (None, 1 << 17)), 1 << 18),
    "kl_div": ByClasses(((3, None), (LANES, 1 << 13), (None, 1 << 16)), 1 << 16),
}
"""Where torch has a kernel of the loss (``lossplug.frameworks.torch_native``), it runs below these
sizes, by the loss's name or else its kind: the elementwise losses are memory-bound, and the derived
kernel's two loops (the sum, the gradient) only beat torch's forward and backward passes once the
inputs leave the caches (mse 1.2x torch's time at 3e5 elements, 0.82x at 1e6 and 2e6; Huber ~1.0x
from 1e6); BCE on logits computes an exp and a log per element, which the kernel does in vector
registers, faster than torch's log_sigmoid from 1e5 (bce 0.97x at 1e5, 0.75x at 1e6; weighted 0.88x,
0.58x).

The class losses' crossover depends on the class count (CPU, one thread, forward and backward):
torch's ``log_softmax`` over a class axis of fewer entries than a vector has lanes (``LANES``: 16
on AVX-512, 8 on AVX2) in 2-D ``(N, C)`` input runs a scalar loop, ~25 ns an element against
~2.5-9 from ``LANES`` classes on (AVX2, ``F.cross_entropy``: 26 ns at C = 7, 6.2 at 8, 8.8 at 10,
4.8 at 16), so there the kernel wins from 8192 elements (AVX-512: sparse CE 0.58x, 0.39x at 16k
for C = 4, 10; soft CE 0.45x-0.78x; KL 0.42x-0.82x). With 2 classes the kernel's loop is poor:
sparse CE wins from 32k (0.96x), soft CE and KL never (1.05x and 1.15x at 2e6: ``None``, torch's
always). From ``LANES`` classes on: sparse CE from 5e5 (1.05x at 3e5; AVX2, C = 10: 1.09x against
torch's 1.07x at 1.6e5), soft CE from 1.3e5 (with the value checks' pass over the soft targets,
torch's route takes 1.2x-1.25x F.cross_entropy's time from 1.3e5 to 2.6e5 elements, the kernel
0.95x-1.2x; 1.3x against 1.25x at 64k), KL from 64k (0.73x-0.78x). Segmentation input
``(N, C, H, W)`` takes torch's vectorised spatial kernels: the kernel wins from 2.6e5 (sparse and
soft CE 0.81x-0.96x, 1.1x-1.5x at 64k), KL from 64k (0.71x).

Hosts differ (the vector width, the caches), so on the CPU the route is measured near these sizes,
from a 16th of them to 4 times them: ``lossplug.frameworks.crossover``.

On a GPU torch's kernel runs at every size (``NATIVE_AT_EVERY_SIZE_ON``): on an H200 (torch 2.11,
forward+backward, checks on) it took less time than the derived kernel at 35 of the 36 benchmark
points where the derived kernel ran, 1e5 to 1e7 elements and 2 to 32000 classes (MSE at 1e7 0.16 against
0.33 ms, BCE on logits 0.35 against 0.99, soft-target CE 0.3-0.55 against 0.5-2.0, KL 0.4-0.6
against 18-55); the exception, sparse CE on 2e6 x 2, 1.9 against 0.58 ms, was one point. That run
called the kernels through dynamo (the traced route failed on torch 2.11, fixed since)."""

NATIVE_AT_EVERY_SIZE_ON = ("cuda",)
"""Devices where a loss that torch has a kernel of keeps it at every size (``NATIVE_UP_TO``)."""


def floor_numel(own: bool) -> int:
    """The fewest elements that take the derived kernel: ``own`` as in ``min_numel``."""
    return min(DERIVED_MIN_NUMEL, TRACED_MIN_NUMEL) if own else DERIVED_MIN_NUMEL


def min_numel(spec, has_native: bool, x=None, axis=None, own: bool = True) -> int | None:
    """The size from which a loss of ``spec`` runs its derived kernel on ``x`` (``None``: never).

    ``axis`` is ``x``'s class axis; ``own`` is ``traced(...)``: false where the kernel is called
    through dynamo (a subclass's formula, class weights).
    """
    floor = floor_numel(own)
    if not has_native:
        return floor
    if x is not None and x.device.type in NATIVE_AT_EVERY_SIZE_ON:
        return None
    rule = NATIVE_UP_TO.get(spec.name, NATIVE_UP_TO.get(spec.kind, 0))
    if isinstance(rule, ByClasses):
        if x is None or axis is None or x.device.type != "cpu":
            rule = NATIVE_UP_TO.get(spec.kind, 0)
        elif x.dim() > 2:
            rule = rule.spatial
        else:
            rule = next(size for below, size in rule.rows if below is None or x.shape[axis] < below)
        if rule is None:
            return None
    return max(floor, rule)


def _value_grad_ranges(module, x, y, ranges: str, label_axis, narrow_labels=None):
    """The reduced loss of ``module`` at ``x``, its gradient, and the ranges ``ranges`` names.

    ``ranges`` is ``""`` (no value check reads the data), ``"y_true"`` or ``"both"``: then the
    last output is ``[min y_true, max y_true, y_true has a non-integer] (+ [min y_pred, max
    y_pred])``, with ``ignore_index`` entries of ``y_true`` counted as 0. ``label_axis`` is the class
    axis where ``y`` is an integer label map: the formula then sees the labels clamped to the
    classes (a bad label is found by the checks on the ranges, not by an index out of bounds).
    """
    ignore = getattr(module, "ignore_index", None)
    labels = y
    if label_axis is not None:
        # the formula reads ``narrow_labels`` (``y`` as float32 or int32) where given, the ranges
        # read ``y`` itself
        given = y if narrow_labels is None else narrow_labels
        labels = given.clamp(0, x.shape[label_axis] - 1)
        if ignore is not None:
            labels = torch.where(given == ignore, given, labels)

    def reduced(x):
        loss, weight = module.terms(x, labels)
        return module._reduce(_xp, loss, weight)

    grad, value = torch.func.grad_and_value(reduced)(x)
    if not ranges:
        return value, grad, None
    t = y if ignore is None else torch.where(y == ignore, 0, y)
    nonintegral = (t != t.floor()).any() if t.is_floating_point() else t.new_zeros((), dtype=torch.bool)
    stats = [t.amin().to(x.dtype), t.amax().to(x.dtype), nonintegral.to(x.dtype)]
    if ranges == "both":
        stats += [x.amin(), x.amax()]
    return value, grad, torch.stack(stats)


def kernel(cls, params: dict) -> compiled.Kernel:
    """The compiled kernel of loss class ``cls`` with ``params``, made on first use.

    One per class and parameter set, each a function of its own: dynamo's recompile limit (8 per
    function) then counts the dtypes and layouts of one loss, not every parameter set a sweep
    tries. Tensors (class weights) are inputs of the kernel, so their values do not matter here.
    """
    kernels = cls.__dict__.get("_derived_kernels")
    if kernels is None:
        kernels = {}
        cls._derived_kernels = kernels
    key = tuple((k, "tensor" if isinstance(v, torch.Tensor) else v) for k, v in params.items())
    found = kernels.get(key)
    if found is None:
        base = _value_grad_ranges.__code__
        code = base.replace(co_name=f"{cls.__name__}_value_grad_ranges_{len(kernels)}")
        fn = types.FunctionType(code, _value_grad_ranges.__globals__, code.co_name)
        found = kernels[key] = compiled.Kernel(fn, label=cls.__qualname__, traceable=traced(cls, params))
    return found


def traced(cls, params: dict) -> bool:
    """Whether the kernel of ``cls`` with ``params`` is traced and called without dynamo: a lossplug
    class's formula reads only its parameters (they key the kernel) and the tensors; a subclass
    may read anything, and tensor parameters (class weights) would be baked into a trace."""
    return "spec" in cls.__dict__ and not any(isinstance(v, torch.Tensor) for v in params.values())


def applicable(x: torch.Tensor, y: torch.Tensor, min_size: int | None) -> bool:
    """Whether the derived kernel may compute ``loss(x, y)`` and its gradient here."""
    return not never_applicable(x, y, min_size) and compiled.usable()


def never_applicable(x: torch.Tensor, y: torch.Tensor, min_size: int | None) -> bool:
    """Whether inputs of ``x``'s and ``y``'s shapes, dtypes, device and gradient needs never take
    the derived kernel, whatever the kernels' switch and the transforms around the call."""
    return min_size is None or not (
        x.numel() >= min_size
        and torch.is_grad_enabled()
        and x.requires_grad
        and not y.requires_grad
        and x.dtype in _DTYPES
        and x.device.type in _DEVICES
    )


def loss(compiled_kernel, module, x: torch.Tensor, y: torch.Tensor, ranges: str, axis, check):
    """The reduced loss by ``compiled_kernel`` (``kernel(...)``), or ``None`` where it cannot run.

    ``axis`` is the class axis (``None`` for losses without one); ``check(stats)`` runs the value
    checks on the kernel's ranges (it raises on bad input), before anything is returned.
    """
    xd, yd = x.detach(), y.detach()
    if yd.dim() == xd.dim() and xd.is_contiguous() and not yd.is_contiguous():
        # a target in another memory layout (masks as ``F.one_hot(labels).movedim(-1, 1)`` give
        # them: channels last) makes inductor's loops walk the class axis; copied, Dice on
        # 8 x C x 256 x 256 masks takes 0.23x (C = 2) to 0.78x (C = 8) the time, copy included
        yd = yd.contiguous()
    label_axis, labels = label_inputs(module, xd, yd, axis)
    out = compiled_kernel.run(module, xd, yd, ranges, label_axis, labels)
    if out is None:
        return None
    value, grad, stats = out
    if stats is not None:
        check(stats)
    if labels is not None:  # in range (checked): the same labels
        yd = labels

    def rerun():
        again = compiled_kernel.run(module, xd, yd, "", label_axis, None)
        return None if again is None else again[1]

    def reference(x):
        loss, weight = module.terms(x, yd)
        return module._reduce(_xp, loss, weight)

    return DerivedLoss.apply(x, value, (grad, rerun), reference)


def label_inputs(module, x: torch.Tensor, y: torch.Tensor, axis):
    """The kernel's ``label_axis`` (the class axis where ``y`` is an integer label map, else
    ``None``) and ``narrow_labels`` (``_kernel_labels``) for ``module`` at ``x``, ``y``."""
    label_axis = axis if axis is not None and y.dim() == x.dim() - 1 else None
    if label_axis is None:
        return None, None
    return label_axis, _kernel_labels(module, y, x.shape[label_axis], getattr(module, "ignore_index", None))


_INT32 = torch.iinfo(torch.int32)
_FLOAT32_EXACT = 1 << 24
"""float32 holds every integer of at most this magnitude."""


def _kernel_labels(module, labels: torch.Tensor, num_classes: int, ignore_index):
    """An int64 label map as the kernel's formula reads it, or ``None``: as given (the checks'
    ranges always read the given labels, so a label that the copy would not hold is still named).

    Where the formula compares the labels with each class (``LossSpec.compares_labels``: the
    overlap losses' sums per class, and their total up to ``COMPARED_TOTALS_UP_TO`` classes):
    float32 copies, which inductor's CPU loops compare in float lanes (int64 takes two vectors per
    lane group and a mask conversion; on AVX2, Dice per class on 8 x 2 x 256 x 256 label maps
    5.4 ms against 9.1 ms, on 8 x 8 x 256 x 256 17 against 21; int32 compares measured in between,
    6.7 and 23); a float label to gather at would be converted back per position.
    Where the formula gathers at the labels (the class losses), from 4 classes on: int32 (half the
    bytes; with 2 classes the copy would only add to the peak memory).
    """
    if labels.dtype != torch.int64:
        return None
    compared = module.params().get("per_class", True) or num_classes <= _xp.COMPARED_TOTALS_UP_TO
    if module.spec.compares_labels and compared:
        exact = ignore_index is None or abs(ignore_index) <= _FLOAT32_EXACT
        exact = exact and num_classes <= _FLOAT32_EXACT
        return labels.to(torch.float32) if exact else None
    if num_classes < 4 or (ignore_index is not None and not _INT32.min < ignore_index < _INT32.max):
        return None
    return labels.to(torch.int32)


class DerivedLoss(torch.autograd.Function):
    """A loss whose gradient the derived kernel has already computed.

    ``apply(x, value, (grad, rerun), reference)``: the first backward hands ``grad`` over without a
    copy; a second one through a retained graph takes ``rerun()``, the same kernel run again (the
    same bits, so gradcheck finds the backward reentrant), or ``None`` where it cannot run now.
    ``reference(x)`` is the same reduced loss composed from differentiable torch ops, for a
    backward that is itself differentiated (``create_graph=True``) or where the kernel cannot rerun.
    """

    @staticmethod
    def forward(ctx, x, value, grad_and_rerun, reference):
        (ctx.grad, ctx.rerun), ctx.reference = grad_and_rerun, reference
        ctx.save_for_backward(x)
        return value

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        create_graph = torch.is_grad_enabled()
        if grad is None and not create_graph:
            grad = ctx.rerun()
        if grad is None or create_graph:
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(ctx.reference(x), x, create_graph=create_graph)
            return grad * grad_output, None, None, None
        if grad_output.device.type != "cpu" or grad_output.item() != 1.0:  # no device sync on a GPU
            grad = grad * grad_output
        return grad, None, None, None
