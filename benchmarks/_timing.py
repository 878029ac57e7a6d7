"""Interleaved timing and peak-memory measurement, shared by the torch and Keras benchmarks.

The machine may be shared, so candidates are never timed one after the other: every round calls
each candidate once (in a rotating order) and the report gives the best and the median round.
"""

from __future__ import annotations

import gc
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

EXTEND_S = 0.5
"""``interleaved(extend_s=EXTEND_S)`` outside ``--quick``: a case whose rounds take less than this
goes on for more rounds (up to 2000) until it has spent it; a call of 0.1 ms (1e4 elements) then
takes its best of ~1000 rounds, not of 30, which on a shared machine left its ratio 1.0x-1.4x from
run to run (mae at 1e4)."""


@dataclass
class Timing:
    """Seconds per call of one candidate: the best and the median of its rounds (wall clock), and
    the best process CPU time (all threads), which descheduling by other processes does not inflate.
    """

    best: float
    median: float
    rounds: int
    best_cpu: float


def interleaved(
    candidates: dict[str, Callable[[], object]],
    *,
    rounds: int,
    min_rounds: int = 3,
    budget_s: float | None = None,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    extend_s: float = 0.0,
    max_rounds: int = 2000,
) -> dict[str, Timing]:
    """Time every candidate, interleaved: round r calls each once, starting at a rotating offset.

    Stops after ``rounds`` rounds, or earlier once ``budget_s`` seconds are spent and at least
    ``min_rounds`` rounds are done; past ``rounds``, goes on (up to ``max_rounds``) while less than
    ``extend_s`` seconds are spent, so that a cheap call is the best of many rounds. ``sync``
    (e.g. ``torch.cuda.synchronize``) runs before each clock read.
    """
    names = list(candidates)
    sync = sync or (lambda: None)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    r = 0
    while True:
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            candidates[name]()
            sync()
            samples[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        r += 1
        spent = time.perf_counter() - start
        if budget_s is not None and r >= min_rounds and spent > budget_s:
            break
        if r >= rounds and (r >= max_rounds or spent >= extend_s):
            break
    return {
        name: Timing(min(s), statistics.median(s), len(s), min(cpu[name])) for name, s in samples.items()
    }


# --- peak memory ----------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1))


def map_large_allocations() -> None:
    """Make glibc map every allocation over 128 KiB and unmap it when freed (``mallopt``).

    By default glibc raises its mmap threshold after the first large free and keeps later large
    blocks on its heap, still resident, so the resident-set high-water mark would miss them. This
    stays in force for the rest of the process: run the memory measurements last.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def release_free_memory() -> None:
    """Give the allocator's free pages back to the system (glibc ``malloc_trim``), so that blocks
    reused from its free lists count as new resident memory when they are touched again."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_supported() -> bool:
    """Linux lets a process reset its peak resident size (VmHWM) through /proc/self/clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status_kib("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


def peak_bytes(
    fn: Callable[[], object], device: str, repeats: int = 3, before: Callable[[], None] | None = None
) -> int | None:
    """Extra memory at the peak of ``fn()`` over what was allocated before it (the least of a few runs).

    ``before`` runs ahead of each baseline reading.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the resident-set high-water mark, reset before
    each run (Linux only; ``None`` elsewhere); large tensors are mapped and unmapped by the
    allocator, so this follows the live tensors to within a few pages.
    """
    import torch

    best = None
    for _ in range(repeats):
        if before is not None:  # e.g. drop the previous run's gradient before the baseline is read
            before()
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - base
        else:
            release_free_memory()
            if not cpu_peak_supported():
                return None
            base = _status_kib("VmRSS")
            fn()
            extra = (_status_kib("VmHWM") - base) * 1024
        best = extra if best is None else min(best, extra)
    return best
