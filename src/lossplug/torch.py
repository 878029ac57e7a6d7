"""``torch.nn.Module`` losses: ``loss(y_pred, y_true)``, class axis ``dim=1`` (0 for 1-D input).

Hyperparameters are plain attributes (``loss.delta``); ``class_weights`` is a buffer, so it follows
``.to(device)`` and is saved in ``state_dict``. Half-precision inputs are computed in float32, as
torch's own losses do under autocast. Large inputs that need a gradient go through the kernel
derived from the loss's formula (``lossplug.frameworks.derived``: ``torch.compile`` of its value and
gradient, compiled by inductor on first use, the same values; ``fused_kernels(False)`` or
``LOSSPLUG_FUSED_KERNELS=0`` turns them off).
"""

from __future__ import annotations

import functools
import types

from lossplug._optional import missing

try:
    import torch
    from torch import nn
except ImportError as _exc:
    raise missing("lossplug.torch", "torch", "torch", _exc) from _exc

from lossplug import core as _core
from lossplug.frameworks import crossover, derived, torch_native
from lossplug.frameworks.adapter import LossAdapter, loss_classes
from lossplug.frameworks.compiled import fused_kernels
from lossplug.frameworks.crossover import measured_crossover
from lossplug.frameworks.ops import get_backend

__all__ = ["fused_kernels", "measured_crossover", "LossModule"]

_xp = get_backend("torch")


def _as_tensors(y_pred, y_true):
    if not isinstance(y_pred, torch.Tensor):
        y_pred = torch.as_tensor(y_pred, dtype=torch.get_default_dtype())
    if not isinstance(y_true, torch.Tensor):
        y_true = torch.as_tensor(y_true, device=y_pred.device)
    if y_pred.dtype in (torch.float16, torch.bfloat16):
        y_pred = y_pred.float()
    if y_true.dtype != y_pred.dtype and (
        y_true.is_floating_point() or y_true.dtype == torch.bool or y_true.shape == y_pred.shape
    ):
        # targets shaped like y_pred (masks, one-hot as F.one_hot gives it, distributions, values)
        # of any dtype compute in y_pred's; integer label maps (an axis fewer) stay integers
        y_true = y_true.to(y_pred.dtype)
    return y_pred, y_true


def _signature(y_pred, y_true):
    """What decides a call's route, checks aside: plain tensors' shapes, dtypes, device and
    gradient needs (``None`` for anything else, which takes the full path)."""
    if type(y_pred) is not torch.Tensor or type(y_true) is not torch.Tensor:
        return None
    return (y_pred.shape, y_true.shape, y_pred.dtype, y_true.dtype, y_pred.device,
            y_pred.requires_grad, y_true.requires_grad, torch.is_grad_enabled())




def _own_copy(fn, cls):
    """``fn`` with a code object of its own, named for ``cls`` (any Python ``requires-python`` allows)."""
    code = fn.__code__.replace(co_name=fn.__name__)  # replace() always makes a new code object
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__doc__, copy.__annotations__ = fn.__doc__, fn.__annotations__
    copy.__qualname__, copy.__module__ = f"{cls.__qualname__}.{fn.__name__}", cls.__module__
    return copy


class LossModule(LossAdapter, nn.Module):
    """Base of every lossplug torch loss.

    Subclass a concrete loss and override ``terms(y_pred, y_true)`` (the unreduced loss and its
    weights) or, for Dice, ``score(intersection, denominator)``; ``forward`` checks the inputs,
    calls ``terms`` and applies ``reduction``.
    """

    framework = "torch"
    _call = "loss(y_pred, y_true)"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" not in cls.__dict__:
            # a forward of the class's own: torch.compile keeps its cache (and its limit of 8
            # recompilations) per code object, as it does for each torch.nn loss class
            cls.forward = _own_copy(LossModule.forward, cls)

    def _base_init(self, **params):
        nn.Module.__init__(self)
        self.reduction = self._store_params(params)["reduction"]

    def params(self) -> dict:
        """The current hyperparameters (attributes may be changed after construction)."""
        # LossAdapter.params without nn.Module.__getattr__: this runs on every call
        d, buffers = self.__dict__, self._buffers
        out = {}
        for p in self.spec.params:
            name = p.name
            out[name] = buffers[name] if name in buffers else d[name] if name in d else getattr(self, name)
        return out

    def _store(self, name, value):
        if name == "class_weights":
            self._set_param(name, value)
        else:
            setattr(self, name, value)

    def _set_param(self, name, value) -> bool:
        if name != "class_weights":
            return False
        # a buffer in the dtype and on the device of the one it replaces (the module's); the exact
        # values are kept, so .double() gives float64 weights, not float32 ones widened
        old = self._buffers.get("class_weights")
        dtype = old.dtype if old is not None and old.is_floating_point() else torch.get_default_dtype()
        device = old.device if old is not None else None
        self.__dict__["_class_weights_exact"] = value
        weights = None if value is None else torch.tensor(value, dtype=dtype, device=device)
        self.register_buffer("class_weights", weights)
        return True

    def __getstate__(self):
        state = super().__getstate__()  # (compiled kernels do not pickle; the next call plans anew)
        return {k: v for k, v in state.items() if k != "_plan"}

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.__dict__.pop("_plan", None)
        weights, exact = self._buffers.get("class_weights"), self.__dict__.get("_class_weights_exact")
        if weights is not None and exact is not None and weights.dtype == torch.float64:
            again = torch.tensor(exact, dtype=torch.float64, device=weights.device)
            if torch.allclose(again, weights, rtol=1e-6, atol=0):  # not replaced by load_state_dict
                self._buffers["class_weights"] = again
        return out

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        plan = self.__dict__.get("_plan")
        signature = None if torch.compiler.is_compiling() else _signature(y_pred, y_true)
        if plan is not None and signature is not None:
            route = plan[4].get(signature)
            if route is not None:  # inputs like an earlier call's: its route, checks included
                return route(y_pred, y_true)
        given = y_pred, y_true
        y_pred, y_true = _as_tensors(y_pred, y_true)
        plan = plan or self._make_plan()
        spec, (params, _, native, _, routes, _) = self.spec, plan
        axis = _core.class_axis(spec, params, y_pred.dim(), "torch")
        y_true = _core.check_shapes(spec, _xp, y_pred, y_true, params, axis)
        if self.reduction != "none":
            own = derived.traced(type(self), params)
            min_size = derived.min_numel(spec, native is not None, y_pred, axis, own)
            if native is not None and signature is not None:
                min_size = self._measured_min_size(plan, min_size, y_pred, y_true, axis, own)
            if derived.applicable(y_pred, y_true, min_size):
                out = self._by_derived(plan, y_pred, y_true, axis)
                if out is not None:
                    return out
            run = None if native is None or torch.compiler.is_compiling() else native(self, y_pred, axis)
            if run is not None:
                out = self._checked_native(run, native.validates_labels, y_pred, y_true, params, axis)
                unchanged = given[0] is y_pred and given[1] is y_true
                if signature is not None and unchanged and derived.never_applicable(y_pred, y_true, min_size):
                    if len(routes) >= 64:  # (shapes that change every call: no unbounded growth)
                        routes.clear()
                    labels = y_pred.dim() != y_true.dim()
                    routes[signature] = self._route(run, native.validates_labels, params, axis, labels)
                return out
        _core.check_values(spec, _xp, y_pred, y_true, params, axis)
        # compiled (no value checks): labels out of range replaced for the formula, the loss NaN
        loss, weight = self.terms(y_pred, _core.safe_labels(spec, _xp, y_pred, y_true, params, axis))
        loss = _core.poison(spec, _xp, y_pred, y_true, params, axis, loss)
        return self._reduce(_xp, loss, weight)

    def _measured_min_size(self, plan, min_size, y_pred, y_true, axis, own):
        """``min_size`` (``derived.min_numel``), or, where ``crossover`` measures the inputs' size
        band, 0 if the derived kernel was the faster on its first call and ``None`` if torch's was."""
        key = crossover.bucket(y_pred, y_true, axis, min_size, derived.floor_numel(own))
        if key is None:
            return min_size
        measured = plan[5]
        faster = measured.get(key)
        if faster is None:
            if not derived.applicable(y_pred, y_true, 0):  # (no gradient wanted: nothing to time)
                return min_size
            params, native = plan[0], plan[2]
            run = native(self, y_pred, axis)
            if run is None:  # (torch's kernel does not take these inputs: the sizes decide)
                measured[key] = "sizes"
                return min_size

            def by_torch(x, y):
                return self._checked_native(run, native.validates_labels, x, y, params, axis)

            def by_derived(x, y):
                return self._by_derived(plan, x, y, axis)

            if len(measured) >= 64:
                measured.clear()
            faster = measured[key] = "derived" if crossover.derived_is_faster(
                by_torch, by_derived, y_pred, y_true, y_pred.numel() >= min_size) else "torch"
        return min_size if faster == "sizes" else 0 if faster == "derived" else None

    def _by_derived(self, plan, y_pred, y_true, axis):
        """The reduced loss by the derived kernel (made on first use, kept in ``plan``), its value
        checks read from the kernel's ranges; ``None`` where the kernel cannot run."""
        spec, (params, ranges) = self.spec, plan[:2]
        if plan[3] is None:
            plan[3] = derived.kernel(type(self), params)

        def check(stats):
            _core.check_values(spec, _xp, y_pred, y_true, params, axis, _core.ranges_from(stats))

        return derived.loss(plan[3], self, y_pred, y_true, ranges, axis, check)

    def _checked_native(self, run, validates_labels, y_pred, y_true, params, axis):
        """torch's kernel of the loss (``run``, bound by ``torch_native``) after the value checks;
        where the kernel validates integer labels itself (on the CPU), the checks run only if it
        fails, to name the bad label (a pass over the labels fewer per call)."""
        spec = self.spec
        if validates_labels and y_pred.device.type == "cpu" and not y_true.is_floating_point():
            try:
                return run(y_pred, y_true)
            except (IndexError, RuntimeError) as exc:
                error = exc
            _core.check_values(spec, _xp, y_pred, y_true, params, axis)  # the ValueError naming it
            raise error
        _core.check_values(spec, _xp, y_pred, y_true, params, axis)
        return run(y_pred, y_true)

    def _route(self, run, validates_labels, params, axis, labels):
        """``route(y_pred, y_true)`` for inputs of one signature: torch's kernel ``run`` and the
        value checks, or the kernel alone where none reads the data (``mse``, ``mae``, ``huber``)."""
        if not _core.has_value_checks(self.spec, params):
            return run
        ranges = _core.range_checks(self.spec, params, labels)
        if ranges is None:
            return functools.partial(self._checked_native, run, validates_labels, params=params, axis=axis)

        def route(y_pred, y_true):
            # the kernel, then the ranges (which raise before anything is returned): BCE on logits at
            # 1e4, forward+backward, 1.18x F's time, 1.21x with the ranges read first
            out = run(y_pred, y_true)
            if not ranges(_xp, y_pred, y_true):
                _core.check_values(self.spec, _xp, y_pred, y_true, params, axis)
            return out

        return route

    def _make_plan(self):
        """What every call needs and no call changes: the parameters, the ranges the value checks
        read, torch's own kernel for them (not for a subclass's own formula), the derived kernel,
        the routes taken by inputs of each signature (``_signature``) where torch's kernel ran, and
        the route measured faster in each size band (``crossover``).
        Kept until a parameter is set or the module moves (``_apply``); not pickled."""
        params = self.params()
        own_formula = type(self).terms is LossModule.terms  # (no native route takes a score)
        # the routes compute lossplug's numerics (a ported loss's numerics="torch" mean is NaN where
        # nothing counts, "monai" switches to BCE on one channel): the formula computes the others
        lossplug_numerics = params.get("numerics", "lossplug") == "lossplug"
        native = torch_native.route_for(self.spec.name, params) if own_formula and lossplug_numerics else None
        # the derived kernel is made on first use; routes: by input signature, the route taken
        # measured: by size band (``crossover.bucket``), the faster route
        plan = [params, _core.ranges_needed(self.spec, params), native, None, {}, {}]
        if not torch.compiler.is_compiling():  # a graph does not keep Python state between calls
            self.__dict__["_plan"] = plan
        return plan

    def terms(self, y_pred: torch.Tensor, y_true: torch.Tensor):
        """The formula before reduction: ``(loss, weight)``, ``weight`` ``None`` for a plain mean."""
        return self._terms(_xp, y_pred, y_true)

    def extra_repr(self) -> str:
        changed = {
            p.name: getattr(self, p.name) for p in self.spec.params
            if p.name not in ("reduction", "class_weights") and getattr(self, p.name) != p.default
        }
        if self.reduction != "mean":
            changed["reduction"] = self.reduction
        return ", ".join(f"{k}={v!r}" for k, v in changed.items())


# One class per registry entry (lossplug._spec.REGISTRY), bound here as module attributes:
# ``lossplug.torch.HuberLoss`` pickles, imports and documents as a hand-written class would.
_CLASSES = loss_classes(LossModule, __name__, _xp)
globals().update(_CLASSES)
__all__ += list(_CLASSES)

from lossplug.frameworks.combined_torch import CombinedLoss  # noqa: E402  (a sum of the classes above)

__all__ += ["CombinedLoss"]
