"""Every loss under ``torch.compile(fullgraph=True)``: no graph breaks, the eager value and gradient.

``fullgraph=True`` turns any graph break into an error. Value checks (probability ranges, labels)
are skipped while compiling; shape checks run at trace time. Compilation is slow on a small CPU
(the first inductor compile of a fresh machine takes about a minute), hence the slow mark.
"""

from __future__ import annotations

import pytest
import torch
from loss_cases import CASE_BY_ID, CASES, FIRST_PER_LOSS, to_torch, torch_loss

import lossplug.torch as lt

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_dynamo():
    # each test starts from an empty dynamo cache (its recompile limit is 8 per code object)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def value_and_grad(loss, arrays):
    y_pred, y_true = to_torch(arrays, torch.float32, requires_grad=True)
    out = loss(y_pred, y_true)
    (grad,) = torch.autograd.grad(out.sum(), y_pred)
    return out.detach(), grad


TRACE_CASES = [(c, "mean") for c in CASES] + [(c, r) for c in FIRST_PER_LOSS for r in ("sum", "none")]


@pytest.mark.parametrize("case,reduction", TRACE_CASES, ids=[f"{c.id}-{r}" for c, r in TRACE_CASES])
def test_fullgraph_trace_matches_eager(case, reduction):
    # aot_eager traces forward and backward through dynamo and AOTAutograd without codegen
    loss = torch_loss(case, reduction=reduction)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    arrays = case.inputs(seed=3)
    out, grad = value_and_grad(compiled, arrays)
    eager_out, eager_grad = value_and_grad(loss, arrays)
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(grad, eager_grad)


@pytest.mark.parametrize("case", FIRST_PER_LOSS, ids=lambda c: c.id)
def test_inductor_matches_eager(case):
    loss = torch_loss(case)
    compiled = torch.compile(loss, fullgraph=True)
    arrays = case.inputs(seed=4)
    out, grad = value_and_grad(compiled, arrays)
    eager_out, eager_grad = value_and_grad(loss, arrays)
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case_id", ["sparse_categorical_ce-cw", "dice-labelmap-softmax", "kl_div-spatial"])
def test_dynamic_batch_size(case_id):
    case = CASE_BY_ID[case_id]
    loss = torch_loss(case)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager", dynamic=True)
    y_pred, y_true = to_torch(case.inputs(seed=5), torch.float32)
    for n in (1, 2, y_pred.shape[0]):
        torch.testing.assert_close(compiled(y_pred[:n], y_true[:n]), loss(y_pred[:n], y_true[:n]))


class FocalBCELoss(lt.BCELoss):
    def __init__(self, *, gamma=2.0, **params):
        super().__init__(**params)
        self.gamma = gamma

    def terms(self, y_pred, y_true):
        bce, weight = super().terms(y_pred, y_true)
        p_t = torch.sigmoid(torch.where(y_true > 0.5, y_pred, -y_pred))
        return (1 - p_t) ** self.gamma * bce, weight


def test_subclass_overriding_terms_compiles():
    loss = FocalBCELoss(gamma=2.0, from_logits=True)
    arrays = CASE_BY_ID["bce-logits"].inputs(seed=6)
    out, grad = value_and_grad(torch.compile(loss, fullgraph=True, backend="aot_eager"), arrays)
    eager_out, eager_grad = value_and_grad(loss, arrays)
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(grad, eager_grad)


def test_shape_errors_still_raise_when_compiled_without_fullgraph():
    compiled = torch.compile(torch_loss(CASES[0]), backend="eager")
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        compiled(torch.zeros(3, 4), torch.zeros(4, 3))


def test_each_loss_class_has_its_own_compile_cache():
    """Two modules of each class compiled in one process: no recompile limit is hit.

    With one shared ``forward`` code object, the ninth module failed with FailOnRecompileLimitHit.
    """
    limit = torch._dynamo.config.recompile_limit
    modules = [factory(**kw) for factory in (lt.MSELoss, lt.MAELoss, lt.HuberLoss, lt.BCELoss)
               for kw in ({}, {"reduction": "sum"})]
    modules += [lt.WeightedBCELoss(pos_weight=2.0), lt.WeightedBCELoss(neg_weight=0.5), lt.DiceLoss(),
                lt.DiceLoss(per_class=True)]
    assert len(modules) > limit
    x, y = torch.rand(6, 4), torch.rand(6, 4)
    for module in modules:
        compiled = torch.compile(module, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x, y), module(x, y))
    assert lt.MSELoss.forward.__code__ is not lt.MAELoss.forward.__code__
