"""Random inputs for every loss and a spread of parameters, as NumPy arrays in torch's layout.

The matrix comes from the registry: each entry's ``cases`` (``lossplug._spec.LossSpec.cases``),
with inputs made by ``lossplug.tools.inputs`` for the case's input kind. Each ``Case`` names a
registry loss, its parameters, and a ``make(rng)`` that returns ``(y_pred, y_true)`` with the
class axis at dim 1 (``(N, C, ...)``), float64 predictions and float64 targets or int64 label
maps. Framework-free, so every test module can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lossplug._spec import REGISTRY
from lossplug.tools import inputs

#: loss name -> torch class name in ``lossplug.torch``
CLASS_NAMES = {name: s.class_name for name, s in REGISTRY.items()}
CLASS_AXIS_LOSSES = {name for name, s in REGISTRY.items() if s.has_class_axis}
softmax, sigmoid, one_hot = inputs.softmax, inputs.sigmoid, inputs.one_hot


@dataclass(frozen=True)
class Case:
    name: str
    params: dict
    make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    label: str = ""
    tags: frozenset = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.label}" if self.label else self.name

    def inputs(self, seed: int = 0):
        return self.make(np.random.default_rng(seed))


def _from_registry(name: str, loss_case) -> Case:
    kind = loss_case.inputs or REGISTRY[name].inputs
    params = dict(loss_case.params)

    def make(rng, kind=kind, params=params, shape=loss_case.shape):
        return inputs.make(kind, params, shape, rng, axis=1)

    return Case(name, params, make, loss_case.label)


# --- the catalogue: every registry entry's cases (``LossSpec.cases``), in registry order ---------

CASES: list[Case] = [_from_registry(name, c) for name, s in REGISTRY.items() for c in s.cases]

CASE_BY_ID: dict[str, Case] = {c.id: c for c in CASES}
assert len(CASE_BY_ID) == len(CASES), "case ids must be unique"

#: one plain case per loss, for the slower checks (compile, gradgradcheck)
FIRST_PER_LOSS: list[Case] = list({c.name: c for c in reversed(CASES)}.values())[::-1]


def numpy_params(case: Case) -> dict:
    """The case's parameters for ``lossplug.numpy``, whose class axis defaults to -1, not 1."""
    params = dict(case.params)
    if case.name in CLASS_AXIS_LOSSES:
        params.setdefault("axis", 1)
    return params


def to_torch(arrays, dtype, requires_grad=False):
    """``(y_pred, y_true)`` as torch tensors: floats in ``dtype``, integer label maps as int64."""
    import torch

    y_pred, y_true = arrays
    pred = torch.tensor(y_pred, dtype=dtype, requires_grad=requires_grad)
    true = torch.tensor(y_true) if y_true.dtype.kind in "iu" else torch.tensor(y_true, dtype=dtype)
    return pred, true


def torch_loss(case: Case, **overrides):
    """The ``lossplug.torch`` module for ``case`` (parameters overridden by ``overrides``)."""
    import lossplug.torch

    return getattr(lossplug.torch, CLASS_NAMES[case.name])(**{**case.params, **overrides})


def value_and_grad(fn, x, y):
    """``fn(x, y)`` and its gradient with respect to ``x`` (a fresh leaf copy), by ``backward``."""
    x = x.detach().clone().requires_grad_()
    value = fn(x, y)
    value.backward()
    return value, x.grad


def tolerances(dtype) -> dict:
    """``rtol``/``atol`` for ``numpy.testing.assert_allclose`` of a ``dtype`` result against float64."""
    if str(dtype).endswith("float64"):
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 2e-6}
