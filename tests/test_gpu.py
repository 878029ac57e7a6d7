"""The CUDA checks (``pytest -m gpu``; skipped without a GPU): on a GPU inductor makes the derived
kernels as Triton code, and each registry loss (its first case, and its first ``from_logits`` case)
must give there the value and gradient of its composed formula in float64 on the CPU; label maps,
the value checks, ``torch.compile`` of a module, double backward and bf16 autocast on CUDA too.

The same derivation runs on the CPU in test_derived_every_loss.py (every loss, ``aot_eager``) and
test_fast_paths.py / test_fused_dice.py (inductor's C++ code); here only the code generator differs.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loss_cases import CASES, FIRST_PER_LOSS, to_torch, torch_loss, value_and_grad

import lossplug.torch as lt
from lossplug.frameworks import compiled, derived

DEV = "cuda"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LOGITS = list({c.name: c for c in reversed(CASES) if c.params.get("from_logits")}.values())[::-1]
GPU_CASES = [c for c in FIRST_PER_LOSS + LOGITS if c.name != "combined"]


@pytest.fixture(autouse=True)
def derived_on_small_inputs(monkeypatch):
    """The derived kernel, compiled by inductor, on the cases' small inputs."""
    monkeypatch.setattr(derived, "DERIVED_MIN_NUMEL", 1)
    monkeypatch.setattr(derived, "TRACED_MIN_NUMEL", 1)
    monkeypatch.setattr(derived, "NATIVE_UP_TO", {})
    monkeypatch.setattr(derived, "NATIVE_AT_EVERY_SIZE_ON", ())
    monkeypatch.setattr(compiled, "BACKEND", "inductor")


def _composed_cpu_float64(module, x, y):
    """The composed formula in float64 on the CPU: the reference of a CUDA result."""
    module = module.to("cpu", torch.float64)
    y = y.cpu() if not y.is_floating_point() else y.cpu().double()
    with lt.fused_kernels(False):
        return value_and_grad(module, x.cpu().double(), y)


def _derived_on_cuda(module, x, y):
    module = module.to(DEV)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compile must fail the test
        value, grad = value_and_grad(module, x.to(DEV), y.to(DEV))
    assert type(value.grad_fn).__name__ == "DerivedLossBackward"
    assert value.device.type == grad.device.type == DEV
    return value, grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c.id)
def test_the_triton_kernel_gives_the_composed_value_and_gradient(case, reduction):
    x, y = to_torch(case.inputs(seed=5), torch.float32)
    value, grad = _derived_on_cuda(torch_loss(case, reduction=reduction), x, y)
    expected, expected_grad = _composed_cpu_float64(torch_loss(case, reduction=reduction), x, y)
    torch.testing.assert_close(value.cpu().double(), expected, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(grad.cpu().double(), expected_grad, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("case", [c for c in FIRST_PER_LOSS if c.name in ("dice", "lovasz", "huber")],
                         ids=lambda c: c.id)
def test_float64_on_cuda_is_exact(case):
    x, y = to_torch(case.inputs(seed=6), torch.float64)
    value, grad = _derived_on_cuda(torch_loss(case), x, y)
    expected, expected_grad = _composed_cpu_float64(torch_loss(case), x, y)
    torch.testing.assert_close(value.cpu(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad.cpu(), expected_grad, rtol=1e-9, atol=1e-12)


def test_a_loss_with_a_torch_kernel_keeps_it_on_cuda(monkeypatch):
    monkeypatch.setattr(derived, "NATIVE_AT_EVERY_SIZE_ON", ("cuda",))
    x = torch.randn(4096, 1000, device=DEV, requires_grad=True)
    labels = torch.randint(0, 1000, (4096,), device=DEV)
    value = lt.SparseCategoricalCELoss(from_logits=True)(x, labels)
    assert type(value.grad_fn).__name__ != "DerivedLossBackward"
    torch.testing.assert_close(value, torch.nn.functional.cross_entropy(x, labels))
    x = torch.rand(4096, 1000, device=DEV, requires_grad=True)  # probabilities: no torch kernel
    value = lt.BCELoss()(x, torch.rand(4096, 1000, device=DEV))
    assert type(value.grad_fn).__name__ == "DerivedLossBackward"


def _label_map(classes, seed=0, ignore=None):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(4, classes, 24, 20, generator=g)
    labels = torch.randint(0, classes, (4, 24, 20), generator=g)
    if ignore is not None:
        labels[:, :3] = ignore
    return x, labels


@pytest.mark.parametrize("per_class", [True, False])
@pytest.mark.parametrize("name", ["DiceLoss", "TverskyLoss", "JaccardLoss", "GeneralizedDiceLoss"])
def test_overlap_losses_on_cuda_label_maps(name, per_class):
    """int64 label maps (read as float32 copies in the kernel), with an ignore label."""
    params = dict(from_logits=True, ignore_index=255)
    if name != "GeneralizedDiceLoss":
        params["per_class"] = per_class
    elif not per_class:
        pytest.skip("generalized Dice has no per_class")
    x, labels = _label_map(5, ignore=255)
    value, grad = _derived_on_cuda(getattr(lt, name)(**params), x, labels)
    expected, expected_grad = _composed_cpu_float64(getattr(lt, name)(**params), x, labels)
    torch.testing.assert_close(value.cpu().double(), expected, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(grad.cpu().double(), expected_grad, rtol=2e-4, atol=2e-7)


def test_dice_on_cuda_matches_monai():
    monai = pytest.importorskip("monai.losses")
    x, labels = _label_map(4, seed=2)
    ours = lt.DiceLoss(from_logits=True, per_class=True).to(DEV)(x.to(DEV), labels.to(DEV))
    theirs = monai.DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True,
                            smooth_nr=1e-5, smooth_dr=1e-5)(x.to(DEV), labels[:, None].to(DEV))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_value_checks_on_cuda_name_the_bad_input():
    x, labels = _label_map(3)
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match="out of range"):
        lt.DiceLoss(from_logits=True).to(DEV)(x.to(DEV).requires_grad_(), labels.to(DEV))
    p = torch.rand(64, 8, device=DEV)
    p[3, 3] = 1.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lt.BCELoss().to(DEV)(p.requires_grad_(), torch.rand(64, 8, device=DEV))


@pytest.mark.parametrize("module", [lt.DiceLoss(from_logits=True), lt.FocalLoss(from_logits=True),
                                    lt.SparseCategoricalCELoss(from_logits=True)],
                         ids=lambda m: type(m).__name__)
def test_torch_compile_of_a_module_on_cuda_has_no_graph_break(module):
    import torch._dynamo

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, 16, 16, generator=g).to(DEV)
    y = torch.randint(0, 4, (8, 16, 16), generator=g).to(DEV)
    if isinstance(module, lt.FocalLoss):
        y = (torch.rand(8, 4, 16, 16, generator=g) > 0.5).float().to(DEV)
    module = module.to(DEV)
    torch._dynamo.reset()
    assert torch._dynamo.explain(module)(x, y).graph_break_count == 0
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    compiled_value = torch.compile(module, fullgraph=True)(xc, y)
    compiled_value.backward()
    eager = module(xe, y)
    eager.backward()
    torch.testing.assert_close(compiled_value, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


def test_double_backward_on_cuda():
    x, labels = _label_map(3)
    x = x[:2, :, :6, :6].double().to(DEV).requires_grad_()
    labels = labels[:2, :6, :6].to(DEV)
    module = lt.DiceLoss(from_logits=True, per_class=True).to(DEV)
    assert torch.autograd.gradgradcheck(lambda t: module(t, labels), (x,))


@pytest.mark.parametrize("module", [lt.BCELoss(from_logits=True), lt.DiceLoss(from_logits=True),
                                    lt.SparseCategoricalCELoss(from_logits=True)],
                         ids=lambda m: type(m).__name__)
def test_bf16_autocast_on_cuda_is_finite(module):
    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Conv2d(3, 4, 1).to(DEV)
    images = (100 * torch.randn(8, 3, 32, 32, generator=g)).to(DEV)  # logits far from 0
    labels = torch.randint(0, 4, (8, 32, 32), generator=g).to(DEV)
    target = labels if not isinstance(module, lt.BCELoss) else (labels[:, None] == torch.arange(
        4, device=DEV)[:, None, None]).float()
    with torch.autocast(DEV, dtype=torch.bfloat16):
        value = module.to(DEV)(layer(images), target)
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(p.grad).all() for p in layer.parameters())
