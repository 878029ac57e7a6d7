"""The torch benchmarks: every lossplug loss against native torch, MONAI and the hand-written version.

Each case times forward + backward (the gradient with respect to ``y_pred``) of several
candidates on the same inputs, interleaved in one process. Candidates:

- ``lossplug``: the lossplug module as users call it (value checks on, the default);
- ``lossplug (no checks)``: the same inside ``lossplug.value_checks(False)``;
- ``lossplug (kernels off)``: the same inside ``lossplug.torch.fused_kernels(False)``: torch's
  own kernel where one computes the formula, else the composed formula in eager torch ops (what
  runs where nothing can be compiled), instead of the kernel derived from the formula;
- ``native``: the torch.nn.functional equivalent (or MONAI's ``DiceLoss`` for Dice);
- ``hand``: the plain composed formula a user would write (a few cases).

The ratio of a row is its best time over the best time of the baseline (``native``) of its case.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import lossplug
import lossplug.torch as lt
from benchmarks._timing import interleaved, map_large_allocations, peak_bytes

EPS = 1e-7


class Case:
    """Inputs plus candidates: name -> loss function ``(y_pred, y_true) -> scalar``."""

    def __init__(self, section, loss, shape, make_inputs, candidates, baseline="native", note=""):
        self.section, self.loss, self.shape = section, loss, shape
        self.make_inputs, self.candidates, self.baseline, self.note = make_inputs, candidates, baseline, note


def _with_checks_off(fn):
    def run(x, y):
        with lossplug.value_checks(False):
            return fn(x, y)

    return run


def _with_fused_off(fn):
    def run(x, y):
        with lt.fused_kernels(False):
            return fn(x, y)

    return run


def _lossplug(module, no_checks=False):
    out = {"lossplug": module, "lossplug (kernels off)": _with_fused_off(module)}
    if no_checks:
        out["lossplug (no checks)"] = _with_checks_off(module)
    return out


# --- inputs ---------------------------------------------------------------------------------------


def _gen(device, seed=0):
    return torch.Generator(device="cpu").manual_seed(seed), device


def _regression(n, device):
    g, _ = _gen(device)
    return torch.randn(n, generator=g).to(device), torch.randn(n, generator=g).to(device)


def _probabilities(n, device, binary=False):
    g, _ = _gen(device)
    p = torch.rand(n, generator=g)
    y = (torch.rand(n, generator=g) > 0.5).float() if binary else torch.rand(n, generator=g)
    return p.to(device), y.to(device)


def _logits(n, device, binary=False):
    g, _ = _gen(device)
    x = 2 * torch.randn(n, generator=g)
    y = (torch.rand(n, generator=g) > 0.5).float() if binary else torch.rand(n, generator=g)
    return x.to(device), y.to(device)


def _class_inputs(shape, device, soft=False):
    """Logits of ``shape`` (class axis 1) and integer labels or soft targets for them."""
    g, _ = _gen(device)
    x = 2 * torch.randn(shape, generator=g)
    if soft:
        y = torch.softmax(torch.randn(shape, generator=g), dim=1)
    else:
        y = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return x.to(device), y.to(device)


def _segmentation(batch, classes, size, device, masks=False):
    x, labels = _class_inputs((batch, classes, size, size), device)
    if masks:  # one-hot masks, as a multilabel segmentation gives them
        return x, F.one_hot(labels, classes).movedim(-1, 1).float()
    return x, labels


# --- the hand-written versions --------------------------------------------------------------------


def hand_dice(x, labels, smooth=1e-5):
    p = x.softmax(1)
    y = F.one_hot(labels, x.shape[1]).movedim(-1, 1).float()
    dims = tuple(range(2, x.dim()))
    num = 2 * (p * y).sum(dims) + smooth
    den = (p * p).sum(dims) + (y * y).sum(dims) + smooth
    return (1 - num / den).mean()


def native_weighted_bce(p, y, pos=2.0, neg=1.0):
    return F.binary_cross_entropy(p, y, weight=neg + (pos - neg) * y)


def monai_dice(to_onehot=True):
    from monai.losses import DiceLoss

    loss = DiceLoss(softmax=True, to_onehot_y=to_onehot, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5)
    return (lambda x, labels: loss(x, labels[:, None])) if to_onehot else loss


# --- the cases ------------------------------------------------------------------------------------


def elementwise_cases(sizes, device) -> list[Case]:
    pos = torch.tensor(2.0, device=device)
    cases = []
    for n in sizes:
        shape = f"{n:.0e}".replace("e+0", "e")
        cases += [
            Case("elementwise", "mse", shape, lambda n=n: _regression(n, device), {
                **_lossplug(lt.MSELoss()), "native": F.mse_loss}),
            Case("elementwise", "mae", shape, lambda n=n: _regression(n, device), {
                **_lossplug(lt.MAELoss()), "native": F.l1_loss}),
            Case("elementwise", "huber", shape, lambda n=n: _regression(n, device), {
                **_lossplug(lt.HuberLoss()), "native": F.huber_loss}),
            Case("elementwise", "bce (probabilities)", shape, lambda n=n: _probabilities(n, device), {
                **_lossplug(lt.BCELoss()), "native": F.binary_cross_entropy},
                note="lossplug clips to [eps, 1-eps]; torch clamps the logs at -100"),
            Case("elementwise", "bce (logits)", shape, lambda n=n: _logits(n, device), {
                **_lossplug(lt.BCELoss(from_logits=True)), "native": F.binary_cross_entropy_with_logits}),
            Case("elementwise", "weighted_bce (logits, w+=2)", shape,
                 lambda n=n: _logits(n, device, binary=True), {
                     **_lossplug(lt.WeightedBCELoss(from_logits=True, pos_weight=2.0)),
                     "native": lambda x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=pos)}),
            Case("elementwise", "weighted_bce (probabilities, w+=2)", shape,
                 lambda n=n: _probabilities(n, device, binary=True), {
                     **_lossplug(lt.WeightedBCELoss(pos_weight=2.0)), "native": native_weighted_bce},
                 note="native: F.binary_cross_entropy with weight = w- + (w+ - w-) y (binary y)"),
        ]
    return cases


def _shape_text(shape):
    return "x".join(str(d) for d in shape)


def class_cases(shapes, device) -> list[Case]:
    """Every class loss on every shape: 2-D ``(N, C)`` and 4-D segmentation ``(N, C, H, W)``."""
    cases = []
    for shape in shapes:
        text = _shape_text(shape)
        cases += [
            Case("class", "sparse_categorical_ce (logits)", text, lambda s=shape: _class_inputs(s, device), {
                **_lossplug(lt.SparseCategoricalCELoss(from_logits=True)), "native": F.cross_entropy}),
            Case("class", "categorical_ce (logits, soft targets)", text,
                 lambda s=shape: _class_inputs(s, device, soft=True), {
                     **_lossplug(lt.CategoricalCELoss(from_logits=True)), "native": F.cross_entropy}),
            Case("class", "kl_div (logits)", text, lambda s=shape: _class_inputs(s, device, soft=True), {
                **_lossplug(lt.KLDivLoss(from_logits=True)),
                "native": lambda x, p: F.kl_div(x.log_softmax(1), p, reduction="sum")
                / (x.numel() // x.shape[1])}),
        ]
    return cases


def dice_cases(batch, class_counts, size, device, monai=True) -> list[Case]:
    """Dice on label maps and on one-hot masks; the baseline is MONAI's DiceLoss (the hand-written
    one without MONAI)."""
    cases = []
    for c in class_counts:
        for masks in (False, True):
            native = {"native": monai_dice(to_onehot=not masks)} if monai else {}
            kind = "masks" if masks else "label map"
            cases.append(Case(
                "dice", f"dice ({kind}, softmax, per class)", f"{batch}x{c}x{size}x{size}",
                lambda c=c, masks=masks: _segmentation(batch, c, size, device, masks=masks), {
                    **_lossplug(lt.DiceLoss(from_logits=True, per_class=True, activation="softmax")),
                    **native, **({} if masks else {"hand": hand_dice})},
                baseline="native" if monai else "hand" if not masks else "lossplug (kernels off)",
                note="native = MONAI DiceLoss(softmax, squared_pred, smooth 1e-5; to_onehot_y on label maps)"
                if monai else "MONAI skipped (--quick)"))
    return cases


# --- user subclasses: their own formula, derived -------------------------------------------------


class FocalBCELoss(lt.BCELoss):
    """docs/subclassing.md's focal BCE, as a user writes it."""

    def __init__(self, *, gamma: float = 2.0, **params):
        super().__init__(**params)
        self.gamma = gamma

    def terms(self, y_pred, y_true):
        loss, weight = super().terms(y_pred, y_true)
        p_t = torch.exp(-loss)
        return (1 - p_t) ** self.gamma * loss, weight


class DenominatorSmoothedDice(lt.DiceLoss):
    """docs/subclassing.md's Dice rule 2I / (D + s)."""

    def score(self, intersection, denominator):
        return 2 * intersection / (denominator + self.smooth)


def subclass_cases(n, seg, device) -> list[Case]:
    """A subclass's derived kernel against the same subclass composed in eager torch ops."""
    focal = FocalBCELoss(gamma=2.0, from_logits=True)
    dice = DenominatorSmoothedDice(from_logits=True, per_class=True)
    shape = f"{n:.0e}".replace("e+0", "e")
    return [
        Case("subclass", "FocalBCELoss(BCELoss), terms overridden", shape,
             lambda: _logits(n, device, binary=True),
             {"lossplug": focal, "eager": _with_fused_off(focal)}, baseline="eager"),
        Case("subclass", "DiceLoss, score overridden", f"{seg['batch']}x4x{seg['size']}x{seg['size']}",
             lambda: _segmentation(seg["batch"], 4, seg["size"], device),
             {"lossplug": dice, "eager": _with_fused_off(dice)}, baseline="eager"),
    ]


# --- running a case -------------------------------------------------------------------------------


def _step(fn, x, y):
    def run():
        x.grad = None
        fn(x, y).backward()

    return run


def run_case(case: Case, *, rounds, budget_s, device, memory=False, extend_s=0.0) -> list[dict]:
    """The case's rows: ``rounds`` interleaved rounds (fewer past ``budget_s``, more below ``extend_s``)."""
    x0, y = case.make_inputs()
    values = {}
    for name, fn in case.candidates.items():
        values[name] = float(fn(x0, y).detach())
    steps = {}
    for name, fn in case.candidates.items():
        x = x0.clone().requires_grad_()
        steps[name] = _step(fn, x, y)
    sync = torch.cuda.synchronize if device == "cuda" else None
    timings = interleaved(steps, rounds=rounds, budget_s=budget_s, sync=sync, extend_s=extend_s)
    base = timings[case.baseline].best
    ref = values[case.baseline]
    rows = []
    for name, t in timings.items():
        row = {
            "section": case.section, "loss": case.loss, "shape": case.shape, "numel": x0.numel(),
            "impl": name, "best_ms": 1e3 * t.best, "median_ms": 1e3 * t.median, "rounds": t.rounds,
            "ratio": t.best / base, "median_ratio": t.median / timings[case.baseline].median,
            "cpu_ms": 1e3 * t.best_cpu, "cpu_ratio": t.best_cpu / timings[case.baseline].best_cpu,
            "baseline": case.baseline, "value": values[name],
            "same_value": math.isclose(values[name], ref, rel_tol=1e-4, abs_tol=1e-6)
            if name != "F.cross_entropy" else None,
            "note": case.note,
        }
        if memory:
            row["peak_mb"] = _peak(steps[name], device)
        rows.append(row)
    return rows


def _peak(step, device, before=None):
    peak = peak_bytes(step, device, before=before)
    return None if peak is None else peak / 2**20


# --- memory of the class losses against F.cross_entropy on the same logits -------------------------


def memory_cases(*, batch, classes, size, device, monai=True) -> list[dict]:
    """Peak extra memory of forward + backward, in MiB, and its ratio to F.cross_entropy's.

    On the CPU this switches glibc to mapping large blocks (see ``map_large_allocations``).
    """
    if device == "cpu":
        map_large_allocations()
    x0, labels = _segmentation(batch, classes, size, device)
    onehot = F.one_hot(labels, classes).movedim(-1, 1).float()
    cands = {
        "F.cross_entropy (index targets)": (F.cross_entropy, labels),
        "lossplug sparse_categorical_ce (logits)":
            (lt.SparseCategoricalCELoss(from_logits=True), labels),
        "lossplug sparse_categorical_ce (probabilities)":
            (lt.SparseCategoricalCELoss(), labels),
        "lossplug dice (label map)": (lt.DiceLoss(from_logits=True), labels),
        "lossplug dice (label map, per class)": (lt.DiceLoss(from_logits=True, per_class=True), labels),
        **({"MONAI DiceLoss (label map)": (monai_dice(), labels)} if monai else {}),
        "lossplug dice (one-hot masks)": (lt.DiceLoss(from_logits=True), onehot),
    }
    rows, base = [], None
    for name, (fn, y) in cands.items():
        x = x0.clone()
        if "probabilities" in name:
            x = x.softmax(1)
        x.requires_grad_()
        peak = _peak(_step(fn, x, y), device, before=lambda x=x: setattr(x, "grad", None))
        if base is None:
            base = peak
        rows.append({
            "section": "memory", "loss": name, "shape": f"{batch}x{classes}x{size}x{size}",
            "peak_mb": peak, "ratio": None if peak is None or not base else peak / base,
            "input_mb": x0.numel() * x0.element_size() / 2**20,
        })
    return rows


# --- torch.compile --------------------------------------------------------------------------------


def compile_rows(device, backend="aot_eager", names=None) -> list[dict]:
    """Graph breaks (torch._dynamo.explain) and |compiled - eager| for every torch loss."""
    import torch._dynamo

    g = torch.Generator().manual_seed(0)
    reg = (torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g))
    prob = (torch.rand(64, 8, generator=g), torch.rand(64, 8, generator=g))
    logits = torch.randn(16, 5, 6, generator=g)
    soft = torch.softmax(torch.randn(16, 5, 6, generator=g), 1)
    labels = torch.randint(0, 5, (16, 6), generator=g)
    cases = {
        "mse": (lt.MSELoss(), reg), "mae": (lt.MAELoss(), reg), "huber": (lt.HuberLoss(), reg),
        "bce": (lt.BCELoss(), prob), "bce (logits)": (lt.BCELoss(from_logits=True), reg[:1] + prob[1:]),
        "weighted_bce": (lt.WeightedBCELoss(pos_weight=2.0, neg_weight=0.5), prob),
        "categorical_ce": (lt.CategoricalCELoss(from_logits=True), (logits, soft)),
        "sparse_categorical_ce": (lt.SparseCategoricalCELoss(from_logits=True), (logits, labels)),
        "dice": (lt.DiceLoss(from_logits=True), (logits, labels)),
        "kl_div": (lt.KLDivLoss(from_logits=True), (logits, soft)),
    }
    rows = []
    for name, (module, (x, y)) in cases.items():
        if names is not None and name not in names:
            continue
        x, y = x.to(device), y.to(device)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(module)(x, y)
        compiled = torch.compile(module, backend=backend, fullgraph=True)
        xc = x.clone().requires_grad_()
        value = compiled(xc, y)
        value.backward()
        xe = x.clone().requires_grad_()
        eager = module(xe, y)
        eager.backward()
        rows.append({
            "section": "compile", "loss": name, "graph_breaks": explained.graph_break_count,
            "abs_diff": float((value - eager).detach().abs()),
            "grad_diff": float((xc.grad - xe.grad).abs().max()), "backend": backend,
        })
    torch._dynamo.reset()
    return rows


# --- a training step ------------------------------------------------------------------------------


def _mlp(inputs, outputs, device, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, outputs),
    ).to(device)


def _segnet(classes, device, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, classes, 3, padding=1),
    ).to(device)


def train_rows(device, *, rounds, budget_s, steps_per_sample=10, monai=True) -> list[dict]:
    """One optimiser step (forward, loss, backward, Adam) with the lossplug loss and with the native one.

    The native losses are modules, as a LightningModule holds them (``nn.MSELoss()``,
    ``nn.CrossEntropyLoss()``, MONAI's ``DiceLoss``), like the lossplug modules they stand against.

    The models are the recipes' kind: an MLP regressor (diabetes-sized batch of 64 features),
    an MLP classifier (digits: 64 features, 10 classes) and a small conv net on 64x64 label maps
    (``monai=False``: the hand-written Dice stands in for MONAI's).
    """
    g = torch.Generator().manual_seed(0)
    recipes = {
        "regression (MLP, MSE)": (
            lambda: _mlp(64, 1, device), torch.randn(512, 64, generator=g), torch.randn(512, 1, generator=g),
            {"lossplug": lt.MSELoss(), "native": torch.nn.MSELoss()}),
        "classification (MLP, sparse CE)": (
            lambda: _mlp(64, 10, device), torch.randn(512, 64, generator=g),
            torch.randint(0, 10, (512,), generator=g),
            {"lossplug": lt.SparseCategoricalCELoss(from_logits=True),
             "native": torch.nn.CrossEntropyLoss()}),
        "segmentation (conv net, Dice)": (
            lambda: _segnet(4, device), torch.randn(16, 1, 64, 64, generator=g),
            torch.randint(0, 4, (16, 64, 64), generator=g),
            {"lossplug": lt.DiceLoss(from_logits=True, per_class=True),
             "native": monai_dice() if monai else hand_dice}),
    }
    rows = []
    for recipe, (make_model, x, y, losses) in recipes.items():
        x, y = x.to(device), y.to(device)
        steps = {}
        # one model and optimiser for both losses: only the loss differs between the candidates, not
        # where the parameters happen to lie in memory
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for name, loss_fn in losses.items():

            def step(model=model, opt=opt, loss_fn=loss_fn, x=x, y=y):
                for _ in range(steps_per_sample):
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(x), y).backward()
                    opt.step()

            steps[name] = step
        sync = torch.cuda.synchronize if device == "cuda" else None
        timings = interleaved(steps, rounds=rounds, budget_s=budget_s, sync=sync)
        base = timings["native"]
        for name, t in timings.items():
            rows.append({
                "section": "train", "loss": recipe, "impl": name,
                "best_ms": 1e3 * t.best / steps_per_sample, "median_ms": 1e3 * t.median / steps_per_sample,
                "ratio": t.best / base.best, "median_ratio": t.median / base.median, "rounds": t.rounds,
                "cpu_ms": 1e3 * t.best_cpu / steps_per_sample, "cpu_ratio": t.best_cpu / base.best_cpu,
                "baseline": "native",
            })
    return rows
