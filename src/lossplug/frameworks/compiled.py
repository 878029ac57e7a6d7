"""Fused loss kernels compiled by torch's own compiler (``torch.compile`` with inductor).

A fused kernel is a plain torch function that returns a loss *and* its gradient (and the input
ranges the value checks need); inductor turns it into one loop that reads each input once and
writes the gradient once, where torch's own losses make a forward pass and a backward pass with
temporaries in between. The function is compiled on its first call (seconds; inductor caches the
result on disk, so later processes load it) with dynamic shapes, so one compilation serves every
batch size.

Compiling needs a C++ compiler on CPU. Where compiling a kernel fails, lossplug warns and uses
torch's own kernels for that loss from then on; ``fused_kernels(False)`` (or
``LOSSPLUG_FUSED_KERNELS=0`` in the environment) turns the fused kernels off.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

_ENABLED = os.environ.get("LOSSPLUG_FUSED_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def _restore(previous):
    global _ENABLED
    try:
        yield
    finally:
        _ENABLED = previous


def fused_kernels(enabled: bool):
    """Turn lossplug's compiled fused kernels on or off (torch, CPU); they are on by default.

    Off, the losses run torch's own kernels (``F.mse_loss``, ``F.cross_entropy``, ...), which give
    the same values. Usable as a plain call or as a context manager restoring the previous setting.
    """
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return _restore(previous)


def usable() -> bool:
    """Whether a fused kernel may run: switched on, in plain eager mode.

    Not while ``torch.compile`` traces (the caller's compiler fuses the loss itself), nor under a
    ``torch.func`` transform (``grad``, ``vmap``, ...), which custom autograd functions and
    compiled kernels do not support.
    """
    return _ENABLED and not torch.compiler.is_compiling() and not functorch_active()


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ...) is running."""
    return torch._C._functorch.peek_interpreter_stack() is not None


class Kernel:
    """A torch function compiled on first use; ``Kernel.run`` gives ``None`` instead of failing."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self._compiled = None
        self.worked = False
        self.failure: str | None = None
        """Why compiling failed (then this kernel is not tried again), or ``None``."""

    def run(self, *args):
        """``fn(*args)`` compiled, or ``None`` where it cannot run compiled.

        That is: fused kernels off or not usable here, compiling failed (a missing C++ compiler;
        then the kernel is not tried again), or a call of an already compiled kernel failed (e.g.
        dynamo's recompile limit, 8 specialisations per kernel, hit by many dtype and shape
        patterns); each failure warns once. Autocast is off inside: losses compute in float32.
        """
        if not usable() or self.failure is not None:
            return None
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
        try:
            with torch.autocast("cpu", enabled=False):
                out = self._compiled(*args)
        except Exception as exc:  # a missing compiler or a dynamo limit show up as many exception types
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
            if not self.worked:
                self.failure = reason
            warnings.warn(
                f"lossplug: {'compiling' if not self.worked else 'running'} the fused kernel "
                f"{self.__name__} failed ({reason}); using torch's own loss kernels "
                + ("for it" if not self.worked else "for this call"),
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        self.worked = True
        return out
