"""Every registry loss (each loss's cases, as ``loss_cases`` makes them from the registry) through its
derived kernel: ``torch.compile`` of ``grad_and_value`` of its formula gives the value and gradient
of the composed formula (float64), and the kernel really ran. A new loss is covered by its registry
entry alone. Compiled by ``aot_eager`` (the traced value-and-gradient graph; inductor's generated
code is checked per loss family in test_fast_paths.py and test_fused_dice.py)."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from loss_cases import FIRST_PER_LOSS, to_torch, torch_loss, value_and_grad

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived

CASES = [c for c in FIRST_PER_LOSS if c.name != "combined"]


@pytest.fixture(autouse=True)
def derived_everywhere(monkeypatch):
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 1)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_derived_kernel_gives_the_composed_value_and_gradient(case, reduction):
    x, y = to_torch(case.inputs(seed=3), torch.float64)
    module = torch_loss(case, reduction=reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compile must fail the test
        value, grad = value_and_grad(module, x, y)
    assert type(value.grad_fn).__name__ == "DerivedLossBackward", case.id
    with lt.fused_kernels(False):
        expected, expected_grad = value_and_grad(module, x, y)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


def _meta_trace(module, x, y, ranges="both", compiling=True):
    """``derived._value_grad_ranges`` of ``module`` traced by ``make_fx`` on meta tensors, with the
    label inputs ``derived.loss`` gives it; ``compiling``: inside ``compiled._compiling()``."""
    from torch.fx.experimental.proxy_tensor import make_fx

    label_axis, labels = derived.label_inputs(module, x, y, 1 if module.spec.has_class_axis else None)
    args = [x.to("meta"), y.to("meta")] + ([] if labels is None else [labels.to("meta")])

    def fn(x, y, *labels):
        with compiled._compiling() if compiling else contextlib.nullcontext():
            return derived._value_grad_ranges(module, x, y, ranges, label_axis, *labels)

    return make_fx(fn)(*args)  # real tracing: meta tensors propagate as they are


def _cpu_nodes(graph):
    return [n.target for n in graph.nodes
            if isinstance(n.meta.get("val"), torch.Tensor) and n.meta["val"].device.type == "cpu"]


LABEL_MAP_MODULES = [
    lt.DiceLoss(from_logits=True, per_class=True, ignore_index=255),
    lt.JaccardLoss(from_logits=True, per_class=False),
    lt.SparseCategoricalCELoss(from_logits=True, ignore_index=-100),
    lt.LovaszLoss(from_logits=True, ignore_index=255),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_kernel_makes_no_cpu_tensor_for_inputs_elsewhere(case):
    """On a GPU inductor fails on a graph that mixes devices (a CPU constant in a CUDA graph, as
    ``torch.zeros(())`` without a device makes): traced on meta inputs, no node may be on the CPU."""
    x, y = to_torch(case.inputs(seed=3), torch.float32)
    on_cpu = _cpu_nodes(_meta_trace(torch_loss(case), x, y).graph)
    assert not on_cpu, f"{case.id}: {on_cpu}"


@pytest.mark.parametrize("module", LABEL_MAP_MODULES, ids=lambda m: type(m).__name__)
def test_the_kernel_makes_no_cpu_tensor_on_label_maps(module):
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(2, 5, 6, 7, generator=g), torch.randint(0, 5, (2, 6, 7), generator=g)
    if module.ignore_index is not None:
        labels[0, 0] = module.ignore_index
    assert not _cpu_nodes(_meta_trace(module, x, labels).graph)


def test_tracing_works_where_torch_has_no_compile_session_context(monkeypatch):
    """torch 2.11 has no ``torch.compiler._compile_session_context``: the traced kernel sets the flag
    that ``is_compiling`` reads instead (else the formulas' eager forms fail to trace)."""
    monkeypatch.delattr(torch.compiler, "_compile_session_context", raising=False)
    assert not torch.compiler.is_compiling()
    with compiled._compiling():
        assert torch.compiler.is_compiling()
    assert not torch.compiler.is_compiling()
    module = LABEL_MAP_MODULES[0]
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(2, 5, 6, 7, generator=g), torch.randint(0, 5, (2, 6, 7), generator=g)
    _meta_trace(module, x, labels)  # the graph forms: a compare per class
    with pytest.raises(NotImplementedError, match="bincount"):  # the eager form has no meta kernel
        _meta_trace(module, x, labels, compiling=False)


def test_tracing_works_with_torch_2_11s_standalone_compile(monkeypatch):
    """torch 2.11's ``standalone_compile`` takes no ``donate_graph_module``: the traced kernel still
    compiles (inductor, CPU) and runs, without falling back to torch.compile."""
    real = torch._inductor.standalone_compile

    def standalone_compile(gm, example_inputs, *, dynamic_shapes="from_graph", options=None):
        return real(gm, example_inputs, dynamic_shapes=dynamic_shapes, options=options)

    monkeypatch.setattr(torch._inductor, "standalone_compile", standalone_compile)
    monkeypatch.setattr(compiled, "BACKEND", "inductor")
    monkeypatch.delattr(torch.compiler, "_compile_session_context", raising=False)
    module = lt.DiceLoss(from_logits=True, per_class=True)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 5, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value, grad = value_and_grad(module, x, labels)
    kernel = derived.kernel(type(module), module.params())
    assert type(value.grad_fn).__name__ == "DerivedLossBackward" and kernel.traces is not None
    assert kernel.traces.exact, "the traced graph served the call"
    with lt.fused_kernels(False):
        expected, expected_grad = value_and_grad(module, x, labels)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
