"""LovaszLoss against the authors' reference algorithm and numbers worked by hand.

The reference below is Berman, Rannen Triki and Blaschko's ``lovasz_losses.py`` (github.com/
bermanmaxim/LovaszSoftmax, pytorch/lovasz_losses.py) written out in NumPy line by line:
``lovasz_grad``, ``lovasz_hinge(per_image, ignore)``, ``lovasz_softmax(classes="present",
per_image, ignore)`` and their ``flatten_*`` helpers, which drop the ignored pixels (lossplug
keeps the shapes fixed and sorts them last instead). The authors' ``mean`` of no values is 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossplug.numpy as ln
import lossplug.torch as lt

# --- the authors' algorithm, in NumPy ------------------------------------------------------------


def lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.astype(float).cumsum(0)
    union = gts + (1 - gt_sorted).astype(float).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:  # cover 1-pixel case
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def _mean(values):
    values = list(values)
    return float(np.mean(values)) if values else 0.0


def flatten_binary_scores(scores, labels, ignore=None):
    scores, labels = scores.reshape(-1), labels.reshape(-1)
    if ignore is None:
        return scores, labels
    valid = labels != ignore
    return scores[valid], labels[valid]


def lovasz_hinge_flat(logits, labels):
    if len(labels) == 0:
        return 0.0
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    perm = np.argsort(-errors, kind="stable")
    errors_sorted, gt_sorted = errors[perm], labels[perm]
    grad = lovasz_grad(gt_sorted)
    return float(np.dot(np.maximum(errors_sorted, 0.0), grad))


def lovasz_hinge(logits, labels, per_image=True, ignore=None):
    """logits (B, H, W), labels (B, H, W) binary."""
    if per_image:
        return _mean(lovasz_hinge_flat(*flatten_binary_scores(log[None], lab[None], ignore))
                     for log, lab in zip(logits, labels, strict=True))
    return lovasz_hinge_flat(*flatten_binary_scores(logits, labels, ignore))


def flatten_probas(probas, labels, ignore=None):
    """probas (B, C, H, W) -> (P, C); labels (B, H, W) -> (P,)."""
    c = probas.shape[1]
    probas = np.moveaxis(probas, 1, -1).reshape(-1, c)
    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    valid = labels != ignore
    return probas[valid], labels[valid]


def lovasz_softmax_flat(probas, labels, classes="present"):
    if probas.size == 0:
        return 0.0
    c = probas.shape[1]
    losses = []
    for k in range(c) if classes == "present" else classes:
        fg = (labels == k).astype(float)
        if classes == "present" and fg.sum() == 0:
            continue
        class_pred = probas[:, 0] if c == 1 else probas[:, k]
        errors = np.abs(fg - class_pred)
        perm = np.argsort(-errors, kind="stable")
        losses.append(float(np.dot(errors[perm], lovasz_grad(fg[perm]))))
    return _mean(losses)


def lovasz_softmax(probas, labels, classes="present", per_image=False, ignore=None):
    if per_image:
        return _mean(lovasz_softmax_flat(*flatten_probas(prob[None], lab[None], ignore), classes=classes)
                     for prob, lab in zip(probas, labels, strict=True))
    return lovasz_softmax_flat(*flatten_probas(probas, labels, ignore), classes=classes)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- the checks ---------------------------------------------------------------------------------

AGGREGATIONS = {"sample": True, "batch": False}  # lossplug's aggregation -> the authors' per_image


@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hinge_matches_the_reference(aggregation, ignore, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 5, 4)) * 2
    y = (rng.uniform(size=(3, 5, 4)) < 0.4).astype(float)
    if ignore is not None:
        y[rng.uniform(size=y.shape) < 0.2] = ignore
    expected = lovasz_hinge(x, y, per_image=AGGREGATIONS[aggregation], ignore=ignore)
    # masks (N, 1, H, W) and one-channel label maps (N, H, W) are the same binary problem
    for pred, target in ((x[:, None], y[:, None]), (x[:, None], y.astype(np.int64))):
        got = ln.lovasz(pred, target, from_logits=True, aggregation=aggregation, ignore_index=ignore, axis=1)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
            loss = lt.LovaszLoss(from_logits=True, aggregation=aggregation, ignore_index=ignore)
            got = loss(torch.tensor(pred, dtype=dtype), torch.tensor(target))
            np.testing.assert_allclose(got.item(), expected, rtol=rtol, atol=1e-6 * rtol)


@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("ignore", [None, 255, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_matches_the_reference(aggregation, ignore, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4, 5, 3)) * 2
    labels = rng.integers(0, 4, size=(3, 5, 3))
    labels[0][labels[0] == 1] = 2  # class 1 absent from image 0: not averaged over there
    if ignore is not None:
        labels[rng.uniform(size=labels.shape) < 0.2] = ignore
    expected = lovasz_softmax(softmax(x), labels, per_image=AGGREGATIONS[aggregation], ignore=ignore)
    got = ln.lovasz(x, labels, from_logits=True, aggregation=aggregation, ignore_index=ignore, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    got = ln.lovasz(softmax(x), labels, aggregation=aggregation, ignore_index=ignore, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # Keras's layout in NumPy: the class axis last
    got = ln.lovasz(np.moveaxis(x, 1, -1), labels, from_logits=True, aggregation=aggregation,
                    ignore_index=ignore)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        loss = lt.LovaszLoss(from_logits=True, aggregation=aggregation, ignore_index=ignore)
        got = loss(torch.tensor(x, dtype=dtype), torch.tensor(labels))
        np.testing.assert_allclose(got.item(), expected, rtol=rtol, atol=1e-6 * rtol)


def test_probabilities_on_masks_are_the_authors_sigmoid_variant():
    # the authors' lovasz_softmax with one channel and classes=[1]: errors |y - p| of sigmoid outputs
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(2, 1, 4, 4))
    y = (rng.uniform(size=(2, 1, 4, 4)) < 0.5).astype(float)
    expected = lovasz_softmax(p, y[:, 0], classes=[1], per_image=True)
    np.testing.assert_allclose(ln.lovasz(p, y, axis=1), expected, rtol=1e-12)


def test_per_sample_values_and_ties():
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(size=(4, 1, 6, 6)), 0)  # many ties in the errors
    y = (rng.uniform(size=(4, 1, 6, 6)) < 0.5).astype(float)
    got = ln.lovasz(x, y, from_logits=True, axis=1, reduction="none")
    expected = [lovasz_hinge(x[i], y[i], per_image=False) for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    got = lt.LovaszLoss(from_logits=True, reduction="none")(torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_by_hand():
    # logits (2, -1, 0.5), labels (1, 0, 0): hinge errors (-1, 0, 1.5), sorted 1.5, 0, -1 with
    # labels 0, 0, 1; Delta_J of the prefixes 1 - 1/2, 1 - 1/3, 1 - 0/3 -> weights (1/2, 1/6, 1/3),
    # so the loss is 1.5 * 1/2 = 0.75
    got = ln.lovasz([[2.0, -1.0, 0.5]], [[1.0, 0.0, 0.0]], from_logits=True)
    np.testing.assert_allclose(got, 0.75, rtol=1e-15)
    # two classes, two pixels, labels (0, 1), p = ((0.8, 0.2), (0.4, 0.6)) (class axis last):
    # class 0: errors |1 - 0.8| = 0.2, |0 - 0.4| = 0.4, sorted 0.4 (not in G), 0.2 (in G):
    # Delta_J 1 - 1/2 then 1 - 0/2 -> 0.4 * 1/2 + 0.2 * 1/2 = 0.3; class 1: errors 0.2 (pixel 0, not
    # in G), 0.4 (pixel 1, in G), sorted 0.4 then 0.2: Delta_J 1 - 0/1 then 1 - 0/2 -> 0.4 * 1 + 0.2 * 0
    # = 0.4; the mean over the two present classes is 0.35
    got = ln.lovasz([[[0.8, 0.2], [0.4, 0.6]]], [[0, 1]])
    np.testing.assert_allclose(got, 0.35, rtol=1e-15)


def test_zero_at_a_perfect_prediction_and_non_negative():
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=(3, 1, 4, 4)) < 0.5).astype(float)
    # hinge: zero once every logit is on the right side with margin 1
    np.testing.assert_allclose(ln.lovasz(3.0 * (2 * y - 1), y, from_logits=True, axis=1), 0.0, atol=1e-15)
    labels = rng.integers(0, 3, size=(3, 4, 4))
    onehot = np.moveaxis(np.eye(3)[labels], -1, 1)
    np.testing.assert_allclose(ln.lovasz(onehot, labels, axis=1), 0.0, atol=1e-15)
    for seed in range(5):
        x = np.random.default_rng(seed).normal(size=(2, 3, 4, 4)) * 3
        assert ln.lovasz(x, labels[:2], from_logits=True, axis=1) >= 0
        assert ln.lovasz(x[:, :1], y[:2], from_logits=True, axis=1) >= 0


def test_every_pixel_ignored_gives_zero_and_a_zero_gradient():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = lt.LovaszLoss(from_logits=True, ignore_index=255)(x, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_gradient_is_the_authors_one():
    # torch.autograd through lossplug's sort against the reference's gradient in torch
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 4, 4))
    labels = rng.integers(0, 3, size=(2, 4, 4))
    xt = torch.tensor(x, requires_grad=True)
    lt.LovaszLoss(from_logits=True)(xt, torch.tensor(labels)).backward()

    xr = torch.tensor(x, requires_grad=True)
    p = torch.softmax(xr, 1)
    losses = []
    for i in range(2):
        per_class = []
        for c in range(3):
            fg = torch.tensor((labels[i] == c).reshape(-1), dtype=torch.float64)
            if fg.sum() == 0:
                continue
            errors = (fg - p[i, c].reshape(-1)).abs()
            errors_sorted, perm = torch.sort(errors, 0, descending=True)
            grad = torch.tensor(lovasz_grad(fg[perm].numpy()))
            per_class.append(torch.dot(errors_sorted, grad))
        losses.append(torch.stack(per_class).mean())
    torch.stack(losses).mean().backward()
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-13)
