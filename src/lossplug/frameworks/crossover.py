"""Near the size where the derived kernel overtakes torch's, the faster of the two, measured here.

``derived.NATIVE_UP_TO`` says from which size a loss that torch has a kernel of takes the derived
kernel instead. Those sizes were measured on the hosts of ``docs/benchmarks.md``, and the crossover
moves with the host (the vector width: AVX2 or AVX-512; the caches), with the loss within a kind
(MAE's derived kernel takes 0.38x ``F.l1_loss``'s time at 5e5 elements, where the elementwise
size keeps torch's kernel up to 2e6) and with the class count (sparse CE on 600 x 500 logits:
derived 0.95x ``F.cross_entropy``, torch's route 1.07x; on 2048 x 64: 1.26x against 1.07x).

So on the CPU, from a 16th of that size to 4 times it (``BELOW``, ``ABOVE``), a module times both
forward and backward on the inputs of the first call of each size band (``bucket``: a power of two
of elements, the class count, ranks, dtypes and layouts) and keeps the faster for every later call
of the band, as ``torch.backends.cudnn.benchmark`` picks a convolution algorithm. Either route
gives the same values (``tests/test_fast_paths.py`` pins both to the NumPy reference); only their
rounding may differ. Outside the band, on a GPU (where torch's kernel keeps every size:
``derived.NATIVE_AT_EVERY_SIZE_ON``), under ``torch.compile`` and ``torch.func`` transforms, and
with ``measured_crossover(False)`` or ``LOSSPLUG_MEASURED_CROSSOVER=0``, the sizes of
``NATIVE_UP_TO`` decide alone.
"""

from __future__ import annotations

import math
import time

from lossplug.core.switch import Switch

BELOW, ABOVE = 16, 4
"""The band measured: from ``size // BELOW`` (at least the derived kernel's floor) to below
``size * ABOVE``, ``size`` the loss's ``NATIVE_UP_TO``."""

WARMUP, ROUNDS, BUDGET_S, MAX_ROUNDS = 3, 5, 0.1, 50
"""Each route runs ``WARMUP`` times untimed (the derived kernel compiles or loads from inductor's
cache on the first; the first few calls of a new size measured up to 4x slower than later ones,
likely fresh memory being paged in), then at
least ``ROUNDS`` timed rounds, interleaved, and more up to ``MAX_ROUNDS`` while less than
``BUDGET_S`` seconds are spent; the best round of each counts."""

MARGIN = 1.03
"""The route the sizes give is kept unless the other one is faster by more than this factor (the
two within timing noise: no change)."""

MEASURED = Switch("LOSSPLUG_MEASURED_CROSSOVER")


def measured_crossover(enabled: bool):
    """Turn the measured choice between torch's kernel and the derived kernel on or off (on by
    default); off, ``derived.NATIVE_UP_TO`` decides alone, the same route on every host. A module
    keeps the choices it made until a parameter is set or it moves. Usable as a plain call or as a
    context manager restoring the previous setting."""
    return MEASURED.set(enabled)


def bucket(x, y, axis, size: int | None, floor: int):
    """The size band of inputs ``x``, ``y`` (class axis ``axis``) whose route is measured, or
    ``None`` where the sizes decide (off, not on the CPU, no crossover, outside the band)."""
    if not MEASURED.on or size is None or x.device.type != "cpu":
        return None
    n = x.numel()
    if not max(floor, size // BELOW) <= n < size * ABOVE:
        return None
    classes = None if axis is None else x.shape[axis]
    return (n.bit_length(), classes, x.dim(), y.dim(), x.dtype, y.dtype, x.is_contiguous(), y.is_contiguous())


def derived_is_faster(by_torch, by_derived, x, y, sizes_say_derived: bool) -> bool:
    """Whether ``by_derived(x, y)`` (``None`` where the kernel cannot run) takes less time forward
    and backward than ``by_torch(x, y)``, timed on a detached copy of ``x`` (the caller's graph and
    gradients untouched). Bad input raises the loss's ``ValueError`` from the first call."""
    xd = x.detach().requires_grad_()
    steps = {"torch": by_torch, "derived": by_derived}
    for _ in range(WARMUP):
        for step in steps.values():
            out = step(xd, y)
            if out is None:
                return False
            xd.grad = None
            out.backward()
    best = {name: math.inf for name in steps}
    names, start, r = list(steps), time.perf_counter(), 0
    while r < ROUNDS or (r < MAX_ROUNDS and time.perf_counter() - start < BUDGET_S):
        for name in names[r % 2:] + names[: r % 2]:
            xd.grad = None
            t0 = time.perf_counter()
            out = steps[name](xd, y)
            if out is None:
                return False
            out.backward()
            best[name] = min(best[name], time.perf_counter() - t0)
        r += 1
    if sizes_say_derived:
        return not best["torch"] * MARGIN < best["derived"]
    return best["derived"] * MARGIN < best["torch"]
