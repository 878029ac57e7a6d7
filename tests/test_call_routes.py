"""The torch modules' per-signature call routes (``LossModule._plan``) and pickling after use.

A module remembers, per input signature (shapes, dtypes, device, gradient needs), that torch's
own kernel computed the loss, and later calls of that signature go straight to it, with the
value checks. These tests pin that the shortcut changes nothing a user can see.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossplug.numpy as lnp
import lossplug.torch as lt


def _routes(module):
    return module.__dict__["_plan"][4]


def test_a_second_call_takes_the_remembered_route_with_the_same_value():
    x, y = torch.randn(64, 5, requires_grad=True), torch.randn(64, 5)
    loss = lt.HuberLoss(delta=0.5)
    first = loss(x, y)
    assert len(_routes(loss)) == 1
    second = loss(x, y)
    second.backward()
    expected = F.huber_loss(x, y, delta=0.5)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    torch.testing.assert_close(x.grad, torch.autograd.grad(expected, x)[0])


def test_a_parameter_set_after_a_call_is_used_by_the_next_one():
    x, y = torch.randn(32, 4), torch.randn(32, 4)
    loss = lt.HuberLoss()
    loss(x, y)
    loss.delta = 0.1  # the plan (and its routes) go
    torch.testing.assert_close(loss(x, y), F.huber_loss(x, y, delta=0.1))
    loss.reduction = "sum"
    torch.testing.assert_close(loss(x, y), F.huber_loss(x, y, delta=0.1, reduction="sum"))
    # a route binds the parameters it reads (the positive weight as a tensor, the smoothing)
    logits, targets = torch.randn(32), torch.rand(32).round()
    weighted = lt.WeightedBCELoss(from_logits=True, pos_weight=2.0)
    weighted(logits, targets)
    weighted.pos_weight = 3.0
    torch.testing.assert_close(weighted(logits, targets), F.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=torch.tensor(3.0)))
    weighted.neg_weight = 0.5
    torch.testing.assert_close(weighted(logits, targets), 0.5 * F.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=torch.tensor(6.0)))
    bce = lt.BCELoss(from_logits=True)
    bce(logits, targets)
    bce.label_smoothing = 0.2
    torch.testing.assert_close(
        bce(logits, targets), F.binary_cross_entropy_with_logits(logits, 0.8 * targets + 0.1))


def test_the_remembered_route_still_checks_the_values():
    x = torch.randn(16, 3)
    loss = lt.BCELoss(from_logits=True)
    loss(x, torch.rand(16, 3).round())
    assert len(_routes(loss)) == 1
    with pytest.raises(ValueError, match=r"y_true \(targets\) must lie in \[0, 1\]"):
        loss(x, torch.full((16, 3), 2.0))  # the same signature: the route, and its check
    labels = torch.randint(0, 4, (16,))
    ce = lt.SparseCategoricalCELoss(from_logits=True)
    ce(torch.randn(16, 4), labels)
    with pytest.raises(ValueError, match="label 7 is out of range"):
        ce(torch.randn(16, 4), torch.full((16,), 7))


@pytest.mark.parametrize("make, bad, match", [
    (lambda: lt.KLDivLoss(), "y_pred", r"y_pred \(probabilities, from_logits=False\) must lie in \[0, 1\]"),
    (lambda: lt.KLDivLoss(), "nan", r"found values from nan to nan"),
    (lambda: lt.CategoricalCELoss(from_logits=True), "y_true", r"y_true \(targets\) must lie in \[0, 1\]"),
], ids=["kl-probabilities", "kl-nan", "soft-ce-targets"])
def test_the_remembered_route_checks_each_range_it_reads(make, bad, match):
    """The route's checks are the ranges ``check_values`` reads, tested without building its
    arguments per call: a bad range in a later call of the same signature still raises, naming
    it, and ``value_checks(False)`` turns them off on the route too."""
    import lossplug

    loss = make()
    p = torch.softmax(torch.randn(16, 4), 1)
    q = torch.softmax(torch.randn(16, 4), 1)
    loss(q, p)
    assert len(_routes(loss)) == 1
    bad_q = {"y_pred": q + 2.0, "nan": q * float("nan")}.get(bad, q)
    bad_p = p * 3.0 if bad == "y_true" else p
    with pytest.raises(ValueError, match=match):
        loss(bad_q, bad_p)
    with lossplug.value_checks(False):
        assert loss(bad_q, bad_p).shape == ()


def test_signatures_that_differ_take_their_own_route():
    loss = lt.MSELoss()
    a, b = torch.randn(8, 3), torch.randn(8, 3)
    loss(a, b)
    loss(a.double(), b.double())
    loss(a.requires_grad_(), b)
    loss(torch.randn(5), torch.randn(5))
    assert len(_routes(loss)) == 4
    np.testing.assert_allclose(loss(a, b).item(), lnp.mse(a.detach().numpy(), b.numpy()), rtol=1e-6)
    # targets of another dtype (converted first) and non-tensors take the full path every time
    loss(a, b.double())
    loss(a.detach().numpy(), b.numpy())
    assert len(_routes(loss)) == 4


def test_a_parameter_input_is_not_remembered_for_the_next_non_tensor():
    # an nn.Parameter (a tensor subclass) and NumPy arrays have no signature: neither may be
    # served a route the other left
    loss = lt.MSELoss()
    x, y = torch.nn.Parameter(torch.randn(6)), torch.randn(6)
    torch.testing.assert_close(loss(x, y), F.mse_loss(x, y))
    assert _routes(loss) == {}
    a, b = np.arange(6.0), np.ones(6)
    np.testing.assert_allclose(loss(a, b).item(), lnp.mse(a, b), rtol=1e-6)


def test_a_subclass_with_its_own_terms_remembers_no_native_route():
    class Squared(lt.MAELoss):
        def terms(self, y_pred, y_true):
            return (y_pred - y_true) ** 2, None

    loss = Squared()
    x, y = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(loss(x, y), F.mse_loss(x, y))
    assert _routes(loss) == {}


@pytest.mark.slow
def test_a_module_pickles_after_its_derived_kernel_ran():
    # the plan holds compiled kernels, which do not pickle: a module (or a model holding it) must
    loss = lt.HuberLoss()
    x = torch.randn(1 << 21, requires_grad=True)
    loss(x, torch.randn(1 << 21)).backward()
    assert loss.__dict__["_plan"][3] is not None  # the derived kernel ran
    buffer = io.BytesIO()
    torch.save(torch.nn.ModuleDict({"loss": loss}), buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)["loss"]
    y = torch.randn(100)
    torch.testing.assert_close(again(y, 0 * y), F.huber_loss(y, 0 * y))
    assert pickle.loads(pickle.dumps(loss)).delta == 1.0


def test_class_weights_loaded_after_a_call_are_read_by_the_route():
    # the route casts the float32 buffer to the float64 input's dtype at each call, so weights that
    # load_state_dict copies into the buffer in place count from the next call on
    loss = lt.SparseCategoricalCELoss(from_logits=True, class_weights=[1.0, 1.0, 1.0])
    x, labels = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 3, (16,))
    loss(x, labels)
    assert len(_routes(loss)) == 1
    loss.load_state_dict(lt.SparseCategoricalCELoss(class_weights=[1.0, 2.0, 3.0]).state_dict())
    weight = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(loss(x, labels), F.cross_entropy(x, labels, weight=weight))
