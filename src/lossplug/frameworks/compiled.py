"""Compiling the derived kernels (``lossplug.frameworks.derived``) with ``torch.compile``/inductor.

A kernel is compiled on its first call (seconds; inductor caches the result on disk, so later
processes load it) with dynamic shapes, so one compilation serves every batch size. Compiling needs
a C++ compiler on the CPU (Triton on a GPU). Where compiling fails, lossplug warns once and that loss
runs its composed formula from then on; ``fused_kernels(False)`` (or ``LOSSPLUG_FUSED_KERNELS=0``
in the environment) turns the compiled kernels off.

Two ways to compile, the same graph: ``torch.compile`` (dynamo traces the Python function and
guards everything it read: the module's attributes, globals, the tensors) for any caller, and, where
the caller vouches that the function reads nothing but its arguments' values (``traceable``: a
lossplug class's formula depends only on its parameters, which key the kernel), a trace by
``make_fx`` with symbolic shapes compiled by ``torch._inductor.standalone_compile``. The second is
called without dynamo (~45 us a call instead of ~135 us): each input layout is looked up by its
exact shapes and strides, and a layout seen for the first time is checked against the shape guards
the trace recorded (its size-1 dimensions, equal sizes, strides) before a graph serves it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings

import torch

from lossplug.core.switch import Switch

_log = logging.getLogger("lossplug")
BACKEND = os.environ.get("LOSSPLUG_COMPILE_BACKEND", "inductor")
"""torch.compile's backend for the kernels: inductor (C++/OpenMP loops on the CPU, Triton on a GPU).
The tests run most derivation cases through ``"aot_eager"`` (the same traced gradient graph, no
code generation) and a set of every loss family through inductor."""
KERNELS = Switch("LOSSPLUG_FUSED_KERNELS")


def fused_kernels(enabled: bool):
    """Turn lossplug's compiled kernels on or off (torch, CPU and CUDA); they are on by default.

    Off, the losses run their composed formulas in eager torch ops, which give the same values.
    Usable as a plain call or as a context manager restoring the previous setting.
    """
    return KERNELS.set(enabled)


def usable() -> bool:
    """Whether a compiled kernel may run: switched on, in plain eager mode.

    Not while ``torch.compile`` traces (the caller's compiler fuses the loss itself), nor under a
    ``torch.func`` transform (``grad``, ``vmap``, ...), which custom autograd functions and
    compiled kernels do not support.
    """
    return KERNELS.on and not torch.compiler.is_compiling() and not functorch_active()


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ...) is running."""
    return torch._C._functorch.peek_interpreter_stack() is not None


_KERNELS: list[Kernel] = []


def failures() -> list[str]:
    """Why kernels of this process could not be compiled (none: an empty list)."""
    return [k.failure for k in _KERNELS if k.failure]


class Kernel:
    """A torch function compiled on first use; ``Kernel.run`` gives ``None`` instead of failing."""

    def __init__(self, fn, label: str | None = None, traceable: bool = False):
        _KERNELS.append(self)
        self.fn = fn
        self.label = label or fn.__name__
        self._compiled = {}  # by backend
        self.worked = False
        self.failure: str | None = None
        """Why compiling failed (then this kernel is not tried again), or ``None``."""
        self._warned_call = False
        self.traces: _Traces | None = _Traces(fn) if traceable else None
        """``traceable``: ``fn`` reads nothing but its arguments (tensors, and constants that key
        the graph by value, modules by class), so it runs as graphs traced without dynamo (the
        module docstring); ``None`` where not, or once tracing failed (then torch.compile)."""
        self._announced = False

    def _announce(self):
        if not self._announced:
            self._announced = True
            _log.warning(
                "lossplug: compiling the derived kernel of %s on its first call (a few seconds; "
                "inductor caches it on disk for later processes)", self.label,
            )

    def _traced(self, args):
        """The traced graph serving ``args``, traced and compiled if none does; ``None`` where
        tracing failed (torch.compile then serves this kernel) or 8 graphs already serve the same
        constants (further layouts take torch.compile's dynamic graph)."""
        try:
            return self.traces.find(args, self._announce)
        except Exception as exc:  # make_fx and inductor fail in many types; torch.compile may not
            _log.info("lossplug: tracing the kernel of %s failed (%s); torch.compile compiles it",
                      self.label, exc)
            self.traces = None
            return None

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
        compiled = None
        if self.traces is not None and BACKEND == "inductor":
            compiled = self._traced(args)
        if compiled is None:
            compiled = self._compiled.get(BACKEND)
        if compiled is None:
            self._announce()
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


@contextlib.contextmanager
def _compiling():
    """``torch.compiler.is_compiling()`` true inside, as while torch.compile traces: its session
    context where torch has one, else the flag that ``is_compiling`` reads (torch 2.11 has no such
    context: without the flag the formulas' eager forms fail to trace, ``.item()`` among them)."""
    session = getattr(torch.compiler, "_compile_session_context", None)
    if session is not None:
        with session():
            yield
        return
    previous = torch.compiler._is_compiling_flag
    torch.compiler._is_compiling_flag = True
    try:
        yield
    finally:
        torch.compiler._is_compiling_flag = previous


def _standalone_compile(gm, inputs):
    """Inductor's compile of a traced graph, handed over where torch takes it (``donate_graph_module``:
    no copy of the graph); torch 2.11 has no such argument and copies it."""
    compile_graph = torch._inductor.standalone_compile
    if "donate_graph_module" in inspect.signature(compile_graph).parameters:
        return compile_graph(gm, inputs, donate_graph_module=True)
    return compile_graph(gm, inputs)


def _no_cuda_autocast():
    if torch.cuda.is_available():
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


class _Traces:
    """``fn`` traced by ``make_fx`` with symbolic shapes and compiled by inductor, per constants.

    ``find(args)`` gives a callable of ``args`` computing ``fn(*args)``: the graph that serves the
    tensors' exact layout (shapes, strides, dtype, device) and the constants (the other arguments),
    looked up in a dict; a layout seen for the first time is tried against each graph's shape
    guards, and traced anew where none holds.
    """

    LIMIT = 8
    EXACT_LIMIT = 256

    def __init__(self, fn):
        self.fn = fn
        self.exact = {}  # exact layout and constants -> callable
        self.graphs = {}  # constants, dtypes, devices, ranks -> [(guard, callable)]

    def find(self, args, announce):
        key = tuple(_layout(a) for a in args)
        found = self.exact.get(key)
        if found is not None:
            return found
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        group = tuple(_group(a) for a in args)
        graphs = self.graphs.setdefault(group, [])
        for guard, graph in graphs:
            if guard(tensors):
                call = graph
                break
        else:
            if len(graphs) >= self.LIMIT:
                return None
            announce()
            guard, call = self._compile(args)
            graphs.append((guard, call))
        if len(self.exact) >= self.EXACT_LIMIT:
            self.exact.clear()
        self.exact[key] = call
        return call

    def _compile(self, args):
        from torch.fx.experimental import _config as fx_config
        from torch.fx.experimental.proxy_tensor import make_fx

        where = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        present = []  # which outputs are tensors (the others are None)

        def tensors_only(*tensors):
            full = list(args)
            for i, t in zip(where, tensors, strict=True):
                full[i] = t
            out = self.fn(*full)
            if not isinstance(out, tuple) or not all(o is None or isinstance(o, torch.Tensor) for o in out):
                raise TypeError("a traced kernel returns a tuple of tensors and Nones")
            present[:] = [o is not None for o in out]
            return tuple(o for o in out if o is not None)

        tensors = [args[i] for i in where]
        # no "duck" sizes: a graph traced where two sizes happen to be equal would serve only equal
        # ones; torch.compiler.is_compiling() true, as under torch.compile (the formulas then take
        # their graph forms: no .item(), a compare per class instead of bincount)
        with fx_config.patch(use_duck_shape=False):
            with _compiling():
                gm = make_fx(tensors_only, tracing_mode="symbolic")(*tensors)
            inputs = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
            for node in gm.graph.nodes:  # where inductor looks for the trace's shapes (dynamo's key)
                if node.op == "placeholder":
                    node.meta["example_value"] = node.meta["val"]
                elif node.op == "output":
                    for out in node.args[0]:
                        out.meta["example_value"] = out.meta["val"]
            artifact = _standalone_compile(gm, inputs)
        # the trace's guards and any inductor added while compiling (where it adds one on a symbol
        # the inputs do not name, this raises: then torch.compile compiles the kernel)
        shape_env = inputs[0].fake_mode.shape_env
        expression = shape_env.produce_guards_expression(inputs, ignore_static=False)

        def call(*call_args):
            out = iter(artifact(*[call_args[i] for i in where]))
            return tuple(next(out) if p else None for p in present)

        def guard(ts):
            return expression is None or bool(shape_env.evaluate_guards_expression(expression, ts))

        return guard, call


def _layout(a):
    if isinstance(a, torch.Tensor):
        return a.shape, a.stride(), a.storage_offset(), a.dtype, a.device
    return _constant(a)


def _group(a):
    return (a.dim(), a.dtype, a.device) if isinstance(a, torch.Tensor) else _constant(a)


def _constant(a):
    return type(a) if isinstance(a, torch.nn.Module) else a  # (a module's formula: by its class)
