"""What the torch modules and Keras classes share: parameters as attributes, signatures, docs.

The framework classes are made from the registry (``loss_classes``); each names its loss once
(as ``class HuberLoss(LossModule, loss="huber")`` would) and gets a keyword-only ``__init__``
with the registry's parameters and defaults, a docstring section listing them, and the
``terms`` → reduce path. Subclasses override these extension points:

- ``terms(...)``: the unreduced ``(loss, weight)`` of the formula, before the reduction;
- the registry's hooks (``LossSpec.hooks``), e.g. ``score(intersection, denominator)`` (Dice): the
  Dice ratio from its sums;
- ``__init__``: add hyperparameters, then call ``super().__init__(**params)``.
"""

from __future__ import annotations

import inspect
import textwrap

from lossplug import core as _core
from lossplug._spec import REGISTRY, Hook, LossParameterError, LossSpec, check_combinations, spec


def signature(loss_spec: LossSpec, extra: tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
        for p in loss_spec.params
    ]
    return inspect.Signature(params + list(extra))


def params_doc(loss_spec: LossSpec, call: str) -> str:
    """The shared docstring section: the formula, parameters with defaults, and the call."""
    lines = [
        "",
        f"Mean-reduction formula (registry name ``{loss_spec.name}``):",
        "",
        "$$" + loss_spec.math + "$$",
        "",
        "Args:",
    ]
    for p in loss_spec.params:
        lines.append(f"    {p.name}: {p.doc}. Default ``{p.default!r}``.")
    lines += ["", "Call:", f"    ``{call}``", ""]
    return "\n".join(lines)


# ``framework=`` is accepted (and must name the class's own framework) so that one Hydra call,
# ``instantiate(cfg.loss, framework="torch")``, builds a shipped loss (``_target_: lossplug.get``)
# and a user's subclass selected by ``_target_: my_project.losses.MyLoss`` alike. It is plumbing,
# not a hyperparameter: the signature and the docs leave it out (docs/hydra.md describes it).


def check_framework(cls, framework) -> None:
    """``framework=None`` or the class's own framework; anything else is a ``ValueError``."""
    if framework is None or framework == cls.framework:
        return
    own = f"{cls.__module__}.{cls.__qualname__}"
    if framework not in ("numpy", "torch", "keras"):
        raise ValueError(f"{own}: unknown framework={framework!r}; it takes 'numpy', 'torch' or 'keras'")
    raise ValueError(
        f"{own} is a {cls.framework} loss but framework={framework!r} was asked for; build "
        f"lossplug.get({cls.spec.name!r}, framework={framework!r}) or a class of lossplug.{framework}"
    )


def _make_init(base_init, loss_spec: LossSpec, extra):
    def __init__(self, *, framework=None, **params):
        check_framework(type(self), framework)
        base_init(self, **params)

    __init__.__signature__ = signature(loss_spec, extra)
    __init__.__doc__ = f"Build a {loss_spec.class_name}; every argument is keyword-only."
    return __init__


def _hook_method(hook: Hook, xp, class_name: str, module: str):
    """The method ``hook.name(self, *hook.args)``: the registry's default with the current params."""

    def method(self, *args):
        return hook.default(xp, *args, *(getattr(self, p) for p in hook.params))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = inspect.Signature(
        [self_param] + [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in hook.args]
    )
    method.__name__, method.__qualname__ = hook.name, f"{class_name}.{hook.name}"
    method.__module__, method.__doc__ = module, hook.doc
    return method


def loss_classes(base: type, module: str, xp, decorate=None) -> dict[str, type]:
    """One subclass of ``base`` per registry entry, named by its ``class_name``, as if written in ``module``.

    Each gets the registry's ``__init__``, docstring and hook methods (Dice's ``score``); ``decorate``
    (Keras's serialisation registration) is applied to each. The framework module binds them as its
    own attributes, so they pickle, import and document as hand-written classes would.
    """
    out = {}
    for s in REGISTRY.values():
        namespace = {"__module__": module, "__qualname__": s.class_name, "__doc__": s.summary}
        for hook in s.hooks:
            namespace[hook.name] = _hook_method(hook, xp, s.class_name, module)
        cls = type(base)(s.class_name, (base,), namespace, loss=s.name)
        out[s.class_name] = decorate(cls) if decorate is not None else cls
    return out


class LossAdapter:
    """Mixin for the framework classes; ``framework`` and ``_call`` are set by each framework."""

    spec: LossSpec
    framework: str
    _call: str
    _extra_init: tuple[inspect.Parameter, ...] = ()

    def __init_subclass__(cls, loss: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if loss is None:
            return
        cls.spec = spec(loss)
        cls._params_by_name = {p.name: p for p in cls.spec.params}
        cls.__init__ = _make_init(cls._base_init, cls.spec, cls._extra_init)
        # the class's own __init__ for help(), pickling and doc tools (not _make_init.<locals>)
        cls.__init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__.__module__ = cls.__module__
        cls.__doc__ = textwrap.dedent(cls.__doc__ or "") + params_doc(cls.spec, cls._call)

    _params_by_name: dict = {}

    def __setattr__(self, name, value):
        # A hyperparameter assigned after construction (loss.delta = 0) is checked and normalised
        # as the constructor does it, with the same LossParameterError.
        param = self._params_by_name.get(name)
        if param is not None:
            value = self._checked_param(param, value)
            self.__dict__.pop("_plan", None)  # the torch modules' cached call plan
            if self._set_param(name, value):
                return
        super().__setattr__(name, value)

    def _checked_param(self, param, value):
        problem = param.check(value)
        if problem is not None:
            raise LossParameterError(
                f"{self.spec.class_name}: {param.name}={value!r} is invalid; it must be {problem}"
            )
        value = param.convert(value)
        if param.name != "reduction" and self.__dict__.get("_params_ready"):  # the combinations,
            # once every parameter is there (no combination involves reduction)
            current = self.params()
            current[param.name] = value
            check_combinations(self.spec, current)
        return value

    def _set_param(self, name, value) -> bool:
        """Store a checked hyperparameter a framework keeps its own way; ``True`` when done."""
        return False

    def _store_params(self, params) -> dict:
        validated = self.spec.validate(params)
        for name, value in validated.items():
            if name != "reduction":
                self._store(name, value)
        self._params_ready = True
        return validated

    def _store(self, name, value):
        setattr(self, name, value)

    def params(self) -> dict:
        """The current hyperparameters (attributes may be changed after construction)."""
        out = {p.name: getattr(self, p.name) for p in self.spec.params if p.name != "reduction"}
        out["reduction"] = self.reduction
        return out

    def _check(self, xp, y_pred, y_true):
        return _core.prepare(self.spec, xp, y_pred, y_true, self.params(), self.framework)

    def _terms(self, xp, y_pred, y_true):
        params = _core.formula_params(self.spec, xp, y_pred, self.params(), self.framework)
        for hook in self.spec.hooks:  # the formula calls hook(xp, *args, *params): route to the method
            method, skip = getattr(self, hook.name), len(hook.params)
            params[hook.name] = lambda _xp, *args, _m=method, _k=skip: _m(*args[:len(args) - _k])
        return self.spec.formula(xp, y_pred, y_true, **params)

    def _reduce(self, xp, loss, weight):
        numerics = getattr(self, "numerics", "lossplug")  # "torch": a weighted mean's 0/0 is NaN
        return _core.reduce(self.spec, xp, loss, weight, self.reduction, self.framework, numerics)
