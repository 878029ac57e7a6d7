"""The losses beyond the nine against their peers: MONAI, torch.nn and the formulas users write.

Each peer computes the same number as the lossplug loss it stands against (the rows' ``same_value``
column says so); where no library has the loss in torch, the peer is the formula written out in
torch ops as a user writes it (torchvision's ``sigmoid_focal_loss``, log-cosh, cosine, hinge, the
Lovász-softmax of Berman et al. 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import lossplug.torch as lt
from benchmarks.torch_cases import Case, _class_inputs, _logits, _lossplug, _regression, _segmentation

SMOOTH = dict(smooth_nr=1e-5, smooth_dr=1e-5)


def _monai(name, **kw):
    import monai.losses

    return getattr(monai.losses, name)(**kw)


def _on_label_maps(loss):
    return lambda x, labels: loss(x, labels[:, None])


# --- the peers that no library has in torch --------------------------------------------------------


def torchvision_focal(x, y, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss(reduction="mean"), its formula in torch ops."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * y + (1 - alpha) * (1 - y)) * loss if alpha >= 0 else loss


def _mean(fn):
    return lambda *a: fn(*a).mean()


def log_cosh(x, y):
    e = x - y
    return (e + F.softplus(-2 * e) - math.log(2.0)).mean()


def cosine(x, y):
    return (1 - F.cosine_similarity(x, y, dim=1, eps=1e-7)).mean()


def hinge(x, y, squared=False):
    margin = torch.clamp(1 - (2 * y - 1) * x, min=0)
    return (margin * margin if squared else margin).mean()


def lovasz_softmax(x, labels):
    """The Lovász-softmax of Berman et al. 2018 (per image, present classes), in torch ops."""
    probs = x.softmax(1)
    per_image = []
    for p, lab in zip(probs, labels, strict=True):
        p, lab = p.flatten(1), lab.flatten()
        losses = []
        for c in range(p.shape[0]):
            fg = (lab == c).to(p.dtype)
            if fg.sum() == 0:
                continue
            errors = (fg - p[c]).abs()
            errors, order = errors.sort(descending=True)
            fg = fg[order]
            gts = fg.sum()
            intersection = gts - fg.cumsum(0)
            union = gts + (1 - fg).cumsum(0)
            jaccard = 1 - intersection / union
            jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
            losses.append(errors @ jaccard)
        per_image.append(torch.stack(losses).mean())
    return torch.stack(per_image).mean()


# --- the cases ------------------------------------------------------------------------------------


def elementwise_peer_cases(sizes, device) -> list[Case]:
    cases = []
    for n in sizes:
        shape = f"{n:.0e}".replace("e+0", "e")
        rows = max(n // 64, 1)

        def rates(n=n, log=False):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, generator=g) if log else torch.rand(n, generator=g) * 4 + 0.1
            return x.to(device), torch.poisson(torch.full((n,), 2.0), generator=g).to(device)

        def vectors(rows=rows):
            g = torch.Generator().manual_seed(0)
            x, y = torch.randn(2, rows, 64, generator=g)
            return x.to(device), y.to(device)

        cases += [
            Case("beyond the nine", "focal (logits, alpha 0.25)", shape,
                 lambda n=n: _logits(n, device, binary=True), {
                     **_lossplug(lt.FocalLoss(from_logits=True, alpha=0.25)),
                     "native": _mean(torchvision_focal)},
                 note="native: torchvision.ops.sigmoid_focal_loss's formula in torch ops"),
            Case("beyond the nine", "log_cosh", shape, lambda n=n: _regression(n, device), {
                **_lossplug(lt.LogCoshLoss()), "native": log_cosh},
                note="native: e + softplus(-2e) - log 2 in torch ops"),
            Case("beyond the nine", "poisson (rates)", shape, rates, {
                **_lossplug(lt.PoissonLoss(eps=1e-8)),
                "native": lambda x, y: F.poisson_nll_loss(x, y, log_input=False)},
                note="native: F.poisson_nll_loss(log_input=False), eps 1e-8"),
            Case("beyond the nine", "poisson (log rates)", shape, lambda: rates(log=True), {
                **_lossplug(lt.PoissonLoss(log_input=True)),
                "native": lambda x, y: F.poisson_nll_loss(x, y, log_input=True)}),
            Case("beyond the nine", "hinge", shape, lambda n=n: _logits(n, device, binary=True), {
                **_lossplug(lt.HingeLoss()), "native": hinge}),
            Case("beyond the nine", "hinge (squared)", shape, lambda n=n: _logits(n, device, binary=True), {
                **_lossplug(lt.HingeLoss(squared=True)), "native": lambda x, y: hinge(x, y, squared=True)}),
            Case("beyond the nine", "cosine_similarity", f"{rows}x64", vectors, {
                **_lossplug(lt.CosineSimilarityLoss(axis=1, eps=1e-7)), "native": cosine},
                note="native: 1 - F.cosine_similarity(dim=1).mean()"),
        ]
    return cases


def class_peer_cases(shapes, device, monai=True) -> list[Case]:
    """Categorical focal on integer labels against MONAI's softmax ``FocalLoss`` (times C: MONAI
    also averages over the class channel)."""
    cases = []
    for shape in shapes:
        native = {}
        if monai:
            theirs = _on_label_maps(_monai("FocalLoss", use_softmax=True, to_onehot_y=True))
            native["native"] = lambda x, y, theirs=theirs: x.shape[1] * theirs(x, y)
        cases.append(Case(
            "beyond the nine", "categorical_focal (logits, labels)", "x".join(map(str, shape)),
            lambda s=shape: _class_inputs(s, device),
            {**_lossplug(lt.CategoricalFocalLoss(from_logits=True)), **native},
            baseline="native" if monai else "lossplug (kernels off)",
            note="native: C x MONAI FocalLoss(use_softmax, to_onehot_y)" if monai else "MONAI skipped"))
    return cases


def overlap_peer_cases(batch, class_counts, size, device, monai=True) -> list[Case]:
    """The overlap losses on label maps, against MONAI's (softmax, to_onehot_y, per class)."""
    cases = []
    for c in class_counts:
        text = f"{batch}x{c}x{size}x{size}"
        peers = {
            "tversky (label map, a 0.3 b 0.7)": (
                lt.TverskyLoss(from_logits=True, per_class=True, alpha=0.3, beta=0.7),
                lambda: _monai("TverskyLoss", softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7, **SMOOTH)),
            "jaccard (label map)": (
                lt.JaccardLoss(from_logits=True, per_class=True),
                lambda: _monai("DiceLoss", softmax=True, to_onehot_y=True, jaccard=True, **SMOOTH)),
            "generalized_dice (label map)": (
                lt.GeneralizedDiceLoss(from_logits=True),
                lambda: _monai("GeneralizedDiceLoss", softmax=True, to_onehot_y=True, **SMOOTH)),
            "dice_ce (label map)": (
                lt.CombinedLoss(terms={
                    "dice": lt.DiceLoss(from_logits=True, per_class=True, squared=False),
                    "ce": lt.SparseCategoricalCELoss(from_logits=True)}),
                lambda: _monai("DiceCELoss", softmax=True, to_onehot_y=True, **SMOOTH)),
        }
        for name, (ours, theirs) in peers.items():
            native = {"native": _on_label_maps(theirs())} if monai else {}
            cases.append(Case(
                "beyond the nine", name, text, lambda c=c: _segmentation(batch, c, size, device),
                {**_lossplug(ours), **native}, baseline="native" if monai else "lossplug (kernels off)",
                note="native: MONAI (softmax, to_onehot_y, smooth 1e-5)" if monai else "MONAI skipped"))
        cases.append(Case(
            "beyond the nine", "lovasz (softmax, label map)", text,
            lambda c=c: _segmentation(batch, c, size, device),
            {**_lossplug(lt.LovaszLoss(from_logits=True)), "native": lovasz_softmax},
            note="native: the Lovász-softmax of Berman et al. 2018 in torch ops (sort per image and class)"))
    return cases
