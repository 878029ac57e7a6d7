"""lossplug.torch against torch.nn.functional wherever the conventions match.

Every test runs in float32 and float64 (the ``torch_dtype`` fixture) and, where torch has the
same reduction, for "mean", "sum" and "none".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossplug.torch as lt

REDUCTIONS = ["mean", "sum", "none"]


def close(actual, expected, tol):
    np.testing.assert_allclose(actual.detach().double().numpy(), expected.detach().double().numpy(), **tol)


def randn(*shape, dtype, scale=1.0):
    return torch.randn(*shape, dtype=torch.float64).mul(scale).to(dtype)


def binary_targets(*shape, dtype):
    return (torch.rand(*shape) < 0.5).to(dtype)


# --- regression ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
def test_mse_and_mae(torch_dtype, tol, reduction, shape):
    x, y = randn(*shape, dtype=torch_dtype), randn(*shape, dtype=torch_dtype)
    close(lt.MSELoss(reduction=reduction)(x, y), F.mse_loss(x, y, reduction=reduction), tol)
    close(lt.MAELoss(reduction=reduction)(x, y), F.l1_loss(x, y, reduction=reduction), tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.1, 1.0, 2.5])
def test_huber(torch_dtype, tol, reduction, delta):
    x, y = randn(4, 5, dtype=torch_dtype, scale=2.0), randn(4, 5, dtype=torch_dtype)
    close(lt.HuberLoss(delta=delta, reduction=reduction)(x, y),
          F.huber_loss(x, y, delta=delta, reduction=reduction), tol)


# --- binary ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_bce_on_probabilities(torch_dtype, tol, reduction, soft):
    # away from the clip region: torch clamps log at -100, lossplug clips p to [eps, 1 - eps]
    p = torch.rand(4, 6, dtype=torch.float64).mul(0.9).add(0.05).to(torch_dtype)
    y = torch.rand(4, 6, dtype=torch_dtype) if soft else binary_targets(4, 6, dtype=torch_dtype)
    close(lt.BCELoss(reduction=reduction)(p, y), F.binary_cross_entropy(p, y, reduction=reduction), tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(torch_dtype, tol, reduction):
    x, y = randn(4, 6, dtype=torch_dtype, scale=3.0), binary_targets(4, 6, dtype=torch_dtype)
    close(lt.BCELoss(from_logits=True, reduction=reduction)(x, y),
          F.binary_cross_entropy_with_logits(x, y, reduction=reduction), tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "pos_weight,neg_weight", [(3.0, 1.0), (0.4, 1.0), (2.0, 0.5), (1.0, 2.0), (1.5, 1.5)]
)
def test_weighted_bce_with_logits(torch_dtype, tol, reduction, pos_weight, neg_weight):
    # -[w+ y log p + w- (1-y) log(1-p)] = w- * torch's loss with pos_weight = w+/w-
    x, y = randn(3, 5, dtype=torch_dtype, scale=3.0), torch.rand(3, 5, dtype=torch_dtype)
    expected = F.binary_cross_entropy_with_logits(
        x, y, weight=torch.full_like(x, neg_weight),
        pos_weight=torch.tensor(pos_weight / neg_weight, dtype=torch_dtype), reduction=reduction,
    )
    loss = lt.WeightedBCELoss(pos_weight=pos_weight, neg_weight=neg_weight, from_logits=True,
                              reduction=reduction)
    close(loss(x, y), expected, tol)


@pytest.mark.parametrize("pos_weight,neg_weight", [(3.0, 1.0), (2.0, 0.5)])
def test_weighted_bce_probabilities_match_logits(torch_dtype, tol, pos_weight, neg_weight):
    x, y = randn(3, 5, dtype=torch_dtype), torch.rand(3, 5, dtype=torch_dtype)
    expected = F.binary_cross_entropy_with_logits(
        x, y, weight=torch.full_like(x, neg_weight),
        pos_weight=torch.tensor(pos_weight / neg_weight, dtype=torch_dtype),
    )
    loss = lt.WeightedBCELoss(pos_weight=pos_weight, neg_weight=neg_weight)
    close(loss(torch.sigmoid(x), y), expected, {"rtol": max(tol["rtol"], 1e-5), "atol": tol["atol"]})


@pytest.mark.parametrize("ls", [0.1, 0.3])
def test_bce_label_smoothing_is_smoothed_targets(torch_dtype, tol, ls):
    x, y = randn(3, 5, dtype=torch_dtype), binary_targets(3, 5, dtype=torch_dtype)
    close(lt.BCELoss(from_logits=True, label_smoothing=ls)(x, y),
          F.binary_cross_entropy_with_logits(x, y * (1 - ls) + ls / 2), tol)


# --- categorical, index targets -----------------------------------------------------------------

INDEX_PARAMS = [
    {},
    {"class_weights": [0.25, 2.0, 1.0, 0.75]},
    {"ignore_index": 2},
    {"ignore_index": -100},
    {"label_smoothing": 0.2},
    {"class_weights": [0.25, 2.0, 1.0, 0.75], "label_smoothing": 0.1},
    {"class_weights": [0.25, 2.0, 1.0, 0.75], "ignore_index": -100, "label_smoothing": 0.25},
]


def torch_ce_kwargs(params):
    out = {"label_smoothing": params.get("label_smoothing", 0.0)}
    if "class_weights" in params:
        out["weight"] = torch.tensor(params["class_weights"])
    if params.get("ignore_index") is not None:
        out["ignore_index"] = params["ignore_index"]
    return out


def index_targets(shape, num_classes, ignore_index):
    labels = torch.randint(0, num_classes, shape)
    if ignore_index is not None:
        labels.view(-1)[::3] = ignore_index
    return labels


# unbatched (C,) input with one label: an ignored label would leave nothing (torch gives nan)
SPARSE_CASES = [
    (shape, params)
    for shape in [(6, 4), (2, 4, 3, 2), (4,)]
    for params in INDEX_PARAMS
    if len(shape) > 1 or params.get("ignore_index") is None
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,params", SPARSE_CASES, ids=str)
def test_sparse_ce_from_logits_is_cross_entropy(torch_dtype, tol, reduction, shape, params):
    x = randn(*shape, dtype=torch_dtype, scale=2.0)
    labels_shape = () if len(shape) == 1 else shape[:1] + shape[2:]
    y = index_targets(labels_shape, 4, params.get("ignore_index"))
    kwargs = torch_ce_kwargs(params)
    if "weight" in kwargs:
        kwargs["weight"] = kwargs["weight"].to(torch_dtype)
    expected = F.cross_entropy(x, y, reduction=reduction, **kwargs)
    loss = lt.SparseCategoricalCELoss(from_logits=True, reduction=reduction, **params)
    close(loss(x, y), expected, tol)


@pytest.mark.parametrize("params", INDEX_PARAMS[:4], ids=str)
def test_sparse_ce_on_probabilities_is_nll_of_log(torch_dtype, tol, params):
    p = torch.softmax(randn(5, 4, dtype=torch_dtype), 1)
    y = index_targets((5,), 4, params.get("ignore_index"))
    kwargs = torch_ce_kwargs(params)
    kwargs.pop("label_smoothing")
    if "weight" in kwargs:
        kwargs["weight"] = kwargs["weight"].to(torch_dtype)
    close(lt.SparseCategoricalCELoss(**params)(p, y), F.nll_loss(torch.log(p), y, **kwargs), tol)


# one-hot targets can only mark an existing class as ignored
ONEHOT_PARAMS = [p for p in INDEX_PARAMS if p.get("ignore_index", 0) >= 0]


@pytest.mark.parametrize("params", ONEHOT_PARAMS, ids=str)
def test_categorical_ce_on_one_hot_is_index_cross_entropy(torch_dtype, tol, params):
    # one-hot targets with class weights / ignore_index give exactly the index-target loss
    x = randn(2, 4, 3, dtype=torch_dtype, scale=2.0)
    y = index_targets((2, 3), 4, params.get("ignore_index"))
    onehot = F.one_hot(y, 4).movedim(-1, 1).to(torch_dtype)
    kwargs = torch_ce_kwargs(params)
    if "weight" in kwargs:
        kwargs["weight"] = kwargs["weight"].to(torch_dtype)
    loss = lt.CategoricalCELoss(from_logits=True, **params)
    close(loss(x, onehot), F.cross_entropy(x, y, **kwargs), tol)


# --- categorical, probability targets -----------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 2)], ids=["NC", "NCHW"])
def test_categorical_ce_soft_targets_is_cross_entropy(torch_dtype, tol, reduction, ls, shape):
    x = randn(*shape, dtype=torch_dtype, scale=2.0)
    y = torch.softmax(randn(*shape, dtype=torch_dtype), 1)
    expected = F.cross_entropy(x, y, reduction=reduction, label_smoothing=ls)
    loss = lt.CategoricalCELoss(from_logits=True, label_smoothing=ls, reduction=reduction)
    close(loss(x, y), expected, tol)
    close(lt.CategoricalCELoss(label_smoothing=ls, reduction=reduction)(torch.softmax(x, 1), y), expected,
          {"rtol": max(tol["rtol"], 1e-5), "atol": tol["atol"]})


def test_categorical_ce_none_is_per_position(torch_dtype, tol):
    x, y = randn(2, 3, 2, 2, dtype=torch_dtype), torch.softmax(randn(2, 3, 2, 2, dtype=torch_dtype), 1)
    expected = F.cross_entropy(x, y, reduction="none")  # (N, H, W), as torch.nn
    close(lt.CategoricalCELoss(from_logits=True, reduction="none")(x, y), expected, tol)


def test_categorical_ce_class_weights_sum_matches_torch(torch_dtype, tol):
    # soft targets with weights: torch's sum is sum_i -sum_c w_c y_ic log p_ic, as is lossplug's
    w = [0.5, 2.0, 1.0]
    x, y = randn(4, 3, dtype=torch_dtype), torch.softmax(randn(4, 3, dtype=torch_dtype), 1)
    expected = F.cross_entropy(x, y, weight=torch.tensor(w, dtype=torch_dtype), reduction="sum")
    close(lt.CategoricalCELoss(from_logits=True, class_weights=w, reduction="sum")(x, y), expected, tol)


# --- KL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["probabilities", "log_input", "from_logits"])
def test_kl_div_is_batchmean_kl_div(torch_dtype, tol, mode):
    x = randn(5, 4, dtype=torch_dtype)
    p = torch.softmax(randn(5, 4, dtype=torch_dtype), 1)
    log_q = torch.log_softmax(x, 1)
    pred = {"probabilities": log_q.exp(), "log_input": log_q, "from_logits": x}[mode]
    params = {"log_input": mode == "log_input", "from_logits": mode == "from_logits"}
    # torch's kl_div(input=log q, target=p) is KL(p || q)
    t = {"rtol": max(tol["rtol"], 1e-5), "atol": max(tol["atol"], 1e-6)}
    close(lt.KLDivLoss(**params)(pred, p), F.kl_div(log_q, p, reduction="batchmean"), t)
    close(lt.KLDivLoss(reduction="sum", **params)(pred, p), F.kl_div(log_q, p, reduction="sum"), t)
    close(lt.KLDivLoss(reduction="none", **params)(pred, p), F.kl_div(log_q, p, reduction="none").sum(1), t)


def test_kl_div_with_zero_targets(torch_dtype, tol):
    # torch's kl_div takes 0 * log 0 = 0 as well
    p = torch.tensor([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]], dtype=torch_dtype)
    log_q = torch.log_softmax(randn(2, 3, dtype=torch_dtype), 1)
    close(lt.KLDivLoss(log_input=True)(log_q, p), F.kl_div(log_q, p, reduction="batchmean"), tol)


def test_kl_div_unbatched_1d(torch_dtype, tol):
    p = torch.softmax(randn(4, dtype=torch_dtype), 0)
    log_q = torch.log_softmax(randn(4, dtype=torch_dtype), 0)
    close(lt.KLDivLoss(log_input=True)(log_q, p), F.kl_div(log_q, p, reduction="sum"), tol)
