"""Compiling the derived kernels (``lossplug.frameworks.derived``) with ``torch.compile``/inductor.

A kernel is compiled on its first call (seconds; inductor caches the result on disk, so later
processes load it) with dynamic shapes, so one compilation serves every batch size. Compiling needs
a C++ compiler on the CPU (Triton on a GPU). Where compiling fails, lossplug warns once and that loss
runs its composed formula from then on; ``fused_kernels(False)`` (or ``LOSSPLUG_FUSED_KERNELS=0``
in the environment) turns the compiled kernels off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import torch

_log = logging.getLogger("lossplug")
BACKEND = os.environ.get("LOSSPLUG_COMPILE_BACKEND", "inductor")
"""torch.compile's backend for the kernels: inductor (C++/OpenMP loops on the CPU, Triton on a GPU).
The tests run most derivation cases through ``"aot_eager"`` (the same traced gradient graph, no
code generation) and a set of every loss family through inductor."""
_ENABLED = os.environ.get("LOSSPLUG_FUSED_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def _restore(previous):
    global _ENABLED
    try:
        yield
    finally:
        _ENABLED = previous


def fused_kernels(enabled: bool):
    """Turn lossplug's compiled kernels on or off (torch, CPU and CUDA); they are on by default.

    Off, the losses run their composed formulas in eager torch ops, which give the same values.
    Usable as a plain call or as a context manager restoring the previous setting.
    """
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return _restore(previous)


def usable() -> bool:
    """Whether a compiled kernel may run: switched on, in plain eager mode.

    Not while ``torch.compile`` traces (the caller's compiler fuses the loss itself), nor under a
    ``torch.func`` transform (``grad``, ``vmap``, ...), which custom autograd functions and
    compiled kernels do not support.
    """
    return _ENABLED and not torch.compiler.is_compiling() and not functorch_active()


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ...) is running."""
    return torch._C._functorch.peek_interpreter_stack() is not None


_KERNELS: list[Kernel] = []


def failures() -> list[str]:
    """Why kernels of this process could not be compiled (none: an empty list)."""
    return [k.failure for k in _KERNELS if k.failure]


class Kernel:
    """A torch function compiled on first use; ``Kernel.run`` gives ``None`` instead of failing."""

    def __init__(self, fn, label: str | None = None):
        _KERNELS.append(self)
        self.fn = fn
        self.label = label or fn.__name__
        self._compiled = {}  # by backend
        self.worked = False
        self.failure: str | None = None
        """Why compiling failed (then this kernel is not tried again), or ``None``."""
        self._warned_call = False

    def run(self, *args):
        """``fn(*args)`` compiled, or ``None`` where it cannot run compiled.

        That is: kernels off or not usable here, compiling failed (a missing C++ compiler, a graph
        break in a subclass's formula; then the kernel is not tried again), or a call of an
        already compiled kernel failed (e.g. dynamo's recompile limit, 8 specialisations per
        kernel, hit by many dtype, layout and parameter patterns). Each kind of failure warns once.
        Autocast is off inside: losses compute in the input's precision.
        """
        if not usable() or self.failure is not None:
            return None
        compiled = self._compiled.get(BACKEND)
        if compiled is None:
            _log.warning(
                "lossplug: compiling the derived kernel of %s on its first call (a few seconds; "
                "inductor caches it on disk for later processes)", self.label,
            )
            compiled = self._compiled[BACKEND] = torch.compile(
                self.fn, backend=BACKEND, dynamic=True, fullgraph=True
            )
        try:
            if _autocast_on():
                with torch.autocast("cpu", enabled=False), _no_cuda_autocast():
                    out = compiled(*args)
            else:  # (entering and leaving the two contexts costs ~9 us a call)
                out = compiled(*args)
        except Exception as exc:  # a missing compiler or a dynamo limit show up as many exception types
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
            if not self.worked:
                self.failure = reason
            elif self._warned_call:
                return None
            self._warned_call = self.worked
            warnings.warn(
                f"lossplug: {'compiling' if not self.worked else 'running'} the derived kernel of "
                f"{self.label} failed ({reason}); it runs the composed formula "
                + ("from now on" if not self.worked else "where this happens"),
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        self.worked = True
        return out


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def _no_cuda_autocast():
    if torch.cuda.is_available():
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()
