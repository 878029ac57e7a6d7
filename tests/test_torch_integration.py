"""lossplug.torch as an nn.Module: buffers, dtypes and devices, autocast, second derivatives,
extreme inputs and the all-ignored batch."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from loss_cases import CASES, FIRST_PER_LOSS, to_torch, torch_loss

import lossplug.torch as lt

# --- class_weights is a buffer ------------------------------------------------------------------


def weighted_losses():
    return [
        lt.CategoricalCELoss(class_weights=[1.0, 2.0, 3.0]),
        lt.SparseCategoricalCELoss(class_weights=[1.0, 2.0, 3.0]),
        lt.DiceLoss(per_class=True, class_weights=[1.0, 2.0, 3.0]),
    ]


@pytest.mark.parametrize("loss", weighted_losses(), ids=lambda m: type(m).__name__)
def test_class_weights_is_a_buffer_in_state_dict(loss):
    assert dict(loss.named_buffers())["class_weights"].tolist() == [1.0, 2.0, 3.0]
    assert loss.state_dict()["class_weights"].dtype == torch.get_default_dtype()
    assert list(loss.parameters()) == []
    fresh = type(loss)(**{**loss.params(), "class_weights": [5.0, 5.0, 5.0]})
    fresh.load_state_dict(loss.state_dict())
    assert fresh.class_weights.tolist() == [1.0, 2.0, 3.0]


def test_loaded_weights_change_the_value():
    # classic example: labels [1, 2, 0], weights [1, 2, 3] -> 8.9871968 / 6 (see test_values_hand)
    p = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    labels = torch.tensor([1, 2, 0])
    loss = lt.SparseCategoricalCELoss(class_weights=[5.0, 5.0, 5.0])
    loss.load_state_dict(lt.SparseCategoricalCELoss(class_weights=[1.0, 2.0, 3.0]).state_dict())
    assert math.isclose(float(loss(p, labels)), 8.9871968 / 6, rel_tol=1e-6)


def test_no_class_weights_no_state():
    assert lt.SparseCategoricalCELoss().state_dict() == {}
    assert lt.HuberLoss(delta=0.5).state_dict() == {}


@pytest.mark.parametrize("loss", weighted_losses(), ids=lambda m: type(m).__name__)
def test_module_to_moves_and_casts_the_weights(loss):
    assert loss.to(torch.float64).class_weights.dtype == torch.float64
    assert loss.half().class_weights.dtype == torch.float16
    assert loss.to("meta").class_weights.device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", [c for c in CASES if "class_weights" in c.params], ids=lambda c: c.id)
def test_cuda_matches_cpu(case):
    loss = torch_loss(case)
    y_pred, y_true = to_torch(case.inputs(), torch.float32)
    expected = loss(y_pred, y_true)
    out = loss.to("cuda")(y_pred.cuda(), y_true.cuda())
    assert loss.class_weights.is_cuda and out.is_cuda
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-6)


def test_float64_module_keeps_float64():
    loss = lt.SparseCategoricalCELoss(class_weights=[0.5, 2.0]).double()
    out = loss(torch.rand(3, 2, dtype=torch.float64), torch.tensor([0, 1, 1]))
    assert out.dtype == torch.float64


@pytest.mark.parametrize(
    "loss", weighted_losses() + [lt.HuberLoss(delta=0.3)], ids=lambda m: type(m).__name__
)
def test_deepcopy_and_pickle(loss):
    # Lightning deep-copies modules and DDP spawn pickles them
    y_pred, y_true = torch.softmax(torch.randn(4, 3), 1), torch.tensor([0, 2, 1, 1])
    if isinstance(loss, lt.HuberLoss):
        y_true = torch.rand(4, 3)
    if isinstance(loss, lt.CategoricalCELoss):
        y_true = torch.eye(3)[y_true]
    for clone in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):
        assert type(clone) is type(loss) and repr(clone) == repr(loss)
        assert clone.state_dict().keys() == loss.state_dict().keys()
        torch.testing.assert_close(clone(y_pred, y_true), loss(y_pred, y_true))


def test_hyperparameters_are_attributes():
    loss = lt.HuberLoss()
    assert loss.delta == 1.0 and loss.reduction == "mean"
    loss.delta = 0.25  # e = 2 beyond delta: 0.5 * 0.0625 + 0.25 * 1.75 = 0.46875
    assert math.isclose(float(loss(torch.tensor([2.0]), torch.tensor([0.0]))), 0.46875, rel_tol=1e-7)
    assert "delta=0.25" in repr(loss)


# --- reduction shapes ---------------------------------------------------------------------------

NONE_SHAPES = {  # case id -> shape of reduction="none" (inputs from loss_cases)
    "mse-4d": (2, 3, 2, 2), "huber": (3, 4), "bce": (3, 4), "weighted_bce-w2-0.5": (3, 4),
    # class losses: one value per position, y_pred's shape without the class axis (F.cross_entropy's)
    "categorical_ce": (4,), "categorical_ce-logits-spatial": (2, 2, 2),
    "sparse_categorical_ce-logits-spatial": (2, 3, 2),
    "dice": (2,), "dice-labelmap-softmax": (2,), "dice-batch": (), "dice-multilabel-batch": (),
    "kl_div": (3,), "kl_div-spatial": (2, 2, 2),
}


@pytest.mark.parametrize("case_id,shape", NONE_SHAPES.items())
def test_reduction_none_shape(case_id, shape):
    case = next(c for c in CASES if c.id == case_id)
    out = torch_loss(case, reduction="none")(*to_torch(case.inputs(), torch.float32))
    assert tuple(out.shape) == shape


# --- autocast -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_autocast_bfloat16_inputs(case):
    loss = torch_loss(case)
    y_pred, y_true = to_torch(case.inputs(), torch.float32)
    leaf = y_pred.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(leaf, y_true)
    out.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all()
    # computed in float32 from the bfloat16 values
    torch.testing.assert_close(out.detach(), loss(leaf.detach().float(), y_true))


def test_autocast_model_output_trains():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        out = lt.SparseCategoricalCELoss(from_logits=True, label_smoothing=0.1)(logits, labels)
    out.backward()
    assert torch.isfinite(out) and all(torch.isfinite(p.grad).all() for p in model.parameters())


# --- second derivatives -------------------------------------------------------------------------


GRAD_CASES = [(c, "mean") for c in CASES] + [(c, "none") for c in FIRST_PER_LOSS]


@pytest.mark.parametrize("case,reduction", GRAD_CASES, ids=[f"{c.id}-{r}" for c, r in GRAD_CASES])
def test_gradcheck_and_gradgradcheck(case, reduction):
    loss = torch_loss(case, reduction=reduction).double()
    y_pred, y_true = to_torch(case.inputs(seed=6), torch.float64, requires_grad=True)

    def f(p):
        return loss(p, y_true)

    assert torch.autograd.gradcheck(f, (y_pred,))
    assert torch.autograd.gradgradcheck(f, (y_pred,))


@pytest.mark.parametrize("name,params", [
    ("mse", {}), ("mae", {}), ("huber", {"delta": 0.5}), ("bce", {"from_logits": True}),
    ("categorical_ce", {"from_logits": True}), ("kl_div", {"log_input": True}),
])
def test_gradient_with_respect_to_targets(name, params):
    # soft targets can come from a teacher network: the loss is differentiable in y_true too
    loss = getattr(lt, {"mse": "MSELoss", "mae": "MAELoss", "huber": "HuberLoss", "bce": "BCELoss",
                        "categorical_ce": "CategoricalCELoss", "kl_div": "KLDivLoss"}[name])(**params)
    y_pred = torch.randn(3, 4, dtype=torch.float64)
    if name == "kl_div":
        y_pred = torch.log_softmax(y_pred, 1)
    y_true = torch.softmax(torch.randn(3, 4, dtype=torch.float64), 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: loss(y_pred, t), (y_true,))


# --- extreme inputs -----------------------------------------------------------------------------

LOGIT_LOSSES = [
    ("bce", {}), ("weighted_bce", {"pos_weight": 3.0, "neg_weight": 0.5}), ("categorical_ce", {}),
    ("sparse_categorical_ce", {}),
    ("sparse_categorical_ce", {"label_smoothing": 0.1, "class_weights": [1, 2]}),
    ("dice", {}), ("dice", {"activation": "softmax"}), ("kl_div", {}),
]
CLASS_NAMES = {"bce": "BCELoss", "weighted_bce": "WeightedBCELoss", "categorical_ce": "CategoricalCELoss",
               "sparse_categorical_ce": "SparseCategoricalCELoss", "dice": "DiceLoss", "kl_div": "KLDivLoss"}


def extreme_targets(name, dtype):
    if name == "sparse_categorical_ce":
        return torch.tensor([1, 0, 0, 1])
    if name in ("categorical_ce", "kl_div"):
        return torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    return torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=dtype)


def assert_finite_loss_and_grad(loss, y_pred, y_true):
    y_pred = y_pred.clone().requires_grad_()
    out = loss(y_pred, y_true)
    out.sum().backward()
    assert torch.isfinite(out).all(), out
    assert torch.isfinite(y_pred.grad).all(), y_pred.grad
    return out.detach()


@pytest.mark.parametrize("name,params", LOGIT_LOSSES, ids=str)
def test_logits_of_plus_minus_1e3(name, params, torch_dtype):
    loss = getattr(lt, CLASS_NAMES[name])(from_logits=True, **params).to(torch_dtype)
    # every sample confidently wrong or right: (N=4, C=2)
    x = torch.tensor([[1e3, -1e3], [-1e3, 1e3], [1e3, 1e3], [-1e3, -1e3]], dtype=torch_dtype)
    for reduction in ("mean", "sum", "none"):
        loss.reduction = reduction
        assert_finite_loss_and_grad(loss, x, extreme_targets(name, torch_dtype))


def test_bce_logits_1e3_value(torch_dtype):
    # softplus(1000) = 1000: a confidently wrong logit costs exactly its size
    x = torch.tensor([1e3, -1e3, 1e3, -1e3], dtype=torch_dtype)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch_dtype)
    out = assert_finite_loss_and_grad(lt.BCELoss(from_logits=True, reduction="none"), x, y)
    assert out.tolist() == [1000.0, 1000.0, 0.0, 0.0]


@pytest.mark.parametrize("name,params", LOGIT_LOSSES, ids=str)
def test_probabilities_exactly_0_and_1(name, params, torch_dtype):
    if params.get("activation"):
        params = {}
    loss = getattr(lt, CLASS_NAMES[name])(**params).to(torch_dtype)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch_dtype)
    for reduction in ("mean", "sum", "none"):
        loss.reduction = reduction
        assert_finite_loss_and_grad(loss, p, extreme_targets(name, torch_dtype))


def test_bce_clipped_value_at_0_and_1():
    # float64: p = 0 for y = 1 and p = 1 for y = 0 both cost -log(eps)
    out = lt.BCELoss(reduction="none")(torch.tensor([0.0, 1.0], dtype=torch.float64),
                                       torch.tensor([1.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), [-math.log(1e-7)] * 2, rtol=1e-6)


@pytest.mark.parametrize("smooth", [0.0, 1e-5, 1.0])
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("aggregation", ["sample", "batch"])
def test_dice_all_empty_masks(smooth, squared, aggregation, torch_dtype):
    loss = lt.DiceLoss(smooth=smooth, squared=squared, aggregation=aggregation)
    zeros = torch.zeros(2, 1, 3, 3, dtype=torch_dtype)
    out = assert_finite_loss_and_grad(loss, zeros, zeros)
    assert float(out) == 0.0  # both masks empty: a perfect prediction


@pytest.mark.parametrize("smooth", [0.0, 1e-5])
def test_dice_empty_target_with_logits(smooth, torch_dtype):
    loss = lt.DiceLoss(from_logits=True, smooth=smooth)
    x = torch.full((2, 1, 3, 3), -1e3, dtype=torch_dtype)
    out = assert_finite_loss_and_grad(loss, x, torch.zeros_like(x))
    assert float(out) == 0.0  # sigmoid(-1e3) is exactly 0: both masks empty


# --- the all-ignored batch ----------------------------------------------------------------------

ALL_IGNORED = [
    ("sparse_categorical_ce", {"from_logits": True}, torch.full((4,), -100)),
    ("sparse_categorical_ce", {"class_weights": [1.0, 2.0, 3.0], "label_smoothing": 0.2},
     torch.full((4,), -100)),
    ("categorical_ce", {"from_logits": True, "class_weights": [1.0, 2.0, 3.0]},
     torch.tensor([[0.0, 0.0, 1.0]] * 4)),
]


@pytest.mark.parametrize("name,params,target", ALL_IGNORED, ids=[f"{n}-{p}" for n, p, _ in ALL_IGNORED])
def test_all_ignored_batch_is_zero_with_finite_grads(name, params, target):
    ignore = -100 if name == "sparse_categorical_ce" else 2
    loss = getattr(lt, CLASS_NAMES[name])(ignore_index=ignore, **params)
    y_pred = torch.softmax(torch.randn(4, 3), 1)
    for reduction in ("mean", "sum", "none"):
        loss.reduction = reduction
        out = assert_finite_loss_and_grad(loss, y_pred, target)
        assert (out == 0).all()


def test_dice_all_ignored_label_map():
    loss = lt.DiceLoss(from_logits=True, ignore_index=255)
    out = assert_finite_loss_and_grad(loss, torch.randn(2, 3, 2, 2), torch.full((2, 2, 2), 255))
    assert float(out) == 0.0


@pytest.mark.parametrize("neg_weight", [1e-40, 5e-324])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weighted_bce_logits_with_a_tiny_negative_weight(neg_weight, reduction, torch_dtype):
    # pos_weight / neg_weight overflows torch's fused pos_weight argument; the loss must not be nan:
    # logit 2 for y = 1 costs 2 * softplus(-2) = 0.2538560; the negatives cost ~neg_weight
    loss = lt.WeightedBCELoss(from_logits=True, pos_weight=2.0, neg_weight=neg_weight, reduction=reduction)
    x = torch.tensor([0.0, 2.0, -3.0], dtype=torch_dtype)
    out = assert_finite_loss_and_grad(loss, x, torch.tensor([0.0, 1.0, 0.0], dtype=torch_dtype))
    assert math.isclose(float(out.sum()), 0.2538560 / (3 if reduction == "mean" else 1), rel_tol=1e-6)
