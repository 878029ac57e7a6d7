"""The measured choice between torch's kernel and the derived kernel near their crossover
(``lossplug.frameworks.crossover``): which sizes are measured, that a band is measured once, that
the faster route is kept (timed with a fake clock here: real timings would make the test flaky),
and that either route gives the loss's value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossplug.torch as lt
from lossplug.frameworks import crossover, derived


@pytest.fixture
def measured(monkeypatch):
    """The measured choice on (conftest turns it off), its decisions recorded; ``answer`` sets what
    the measurement says (``None``: really time both)."""
    monkeypatch.setattr(crossover.MEASURED, "on", True)
    calls = []
    real = crossover.derived_is_faster

    def fake(by_torch, by_derived, x, y, sizes_say_derived):
        calls.append((tuple(x.shape), sizes_say_derived))
        if fake.answer is None:
            return real(by_torch, by_derived, x, y, sizes_say_derived)
        return fake.answer

    fake.answer, fake.calls = True, calls
    monkeypatch.setattr(crossover, "derived_is_faster", fake)
    return fake


def _took_derived(out):
    return type(out.grad_fn).__name__.startswith("DerivedLoss")


def _logits(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, requires_grad=True), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("answer", [True, False])
def test_the_route_measured_faster_runs_for_the_whole_band(measured, answer):
    """Sparse CE on 1024 x 128 logits (131072 elements: torch's kernel by the sizes, in the band):
    measured once, then every call of the band (1024 x 128 and 1100 x 128: 2^17 to 2^18 elements)
    takes the faster route; 2048 x 128 is the next band, measured again."""
    measured.answer = answer
    loss = lt.SparseCategoricalCELoss(from_logits=True)
    for n in (1024, 1024, 1100):
        x, y = _logits(n, 128)
        assert _took_derived(loss(x, y)) is answer
    assert measured.calls == [((1024, 128), False)]
    loss(*_logits(2048, 128))
    assert measured.calls[1:] == [((2048, 128), False)]


def test_sizes_decide_outside_the_band_off_and_without_a_gradient(measured):
    loss = lt.SparseCategoricalCELoss(from_logits=True)
    size = derived.min_numel(loss.spec, True, torch.empty(10, 128), 1)
    below = size // crossover.BELOW // 128 - 1
    assert not _took_derived(loss(*_logits(below, 128)))  # below the band: torch's kernel
    x, y = _logits(4 * size // 128, 128)  # above it: the derived kernel
    assert _took_derived(loss(x, y))
    x, y = _logits(1024, 128)
    with torch.no_grad():
        loss(x, y)
    loss(x.detach(), y)
    with lt.fused_kernels(False):
        loss(x, y)
    with lt.measured_crossover(False):
        assert not _took_derived(loss(x, y))
    assert measured.calls == []
    # a loss torch has no kernel of (Dice) takes the derived kernel by the sizes alone
    dice = lt.DiceLoss(from_logits=True)
    dice(torch.randn(2, 3, 64, 64, requires_grad=True), torch.randint(0, 3, (2, 64, 64)))
    assert measured.calls == []


def test_not_measured_on_a_gpu_or_under_compile(measured):
    """``bucket`` measures CPU inputs only (on CUDA torch's kernel runs at every size), and a module
    traced by torch.compile has no signature to keep a choice for."""
    meta = torch.empty(1024, 128, device="meta")
    assert crossover.bucket(meta, torch.empty(1024, device="meta"), 1, 1 << 19, 4096) is None
    assert crossover.bucket(torch.empty(1024, 128), torch.empty(1024), 1, 1 << 19, 4096) is not None
    loss = torch.compile(lt.SparseCategoricalCELoss(from_logits=True), backend="eager", fullgraph=True)
    x, y = _logits(1024, 128)
    loss(x, y).backward()
    assert measured.calls == []


def test_bad_input_raises_from_the_measurement(measured):
    measured.answer = None
    loss = lt.SparseCategoricalCELoss(from_logits=True)
    x, y = _logits(1024, 128)
    y[7] = 128
    with pytest.raises(ValueError, match="128"):
        loss(x, y)
    assert loss._plan[5] == {}


@pytest.mark.parametrize("name, make", [
    ("sparse_categorical_ce", lambda: (lt.SparseCategoricalCELoss(from_logits=True), *_logits(1024, 128))),
    ("mae", lambda: (lt.MAELoss(), torch.randn(300_000, requires_grad=True), torch.randn(300_000))),
    ("bce", lambda: (lt.BCELoss(from_logits=True), torch.randn(20_000, requires_grad=True),
                     torch.rand(20_000))),
])
def test_really_measured_the_value_and_gradient_are_the_loss(measured, name, make):
    """Timed for real: whichever route wins, the loss and its gradient are torch's (float64 here)
    and the caller's gradient is only the call's own."""
    measured.answer = None
    loss, x, y = make()
    x, y = x.detach().double().requires_grad_(), (y.double() if y.is_floating_point() else y)
    out = loss(x, y)
    out.backward()
    assert list(loss._plan[5].values())[0] in ("torch", "derived")
    xr = x.detach().clone().requires_grad_()
    native = {"sparse_categorical_ce": F.cross_entropy, "mae": F.l1_loss,
              "bce": F.binary_cross_entropy_with_logits}[name]
    ref = native(xr, y)
    ref.backward()
    torch.testing.assert_close(out.detach(), ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-14)


class _Clock:
    """A fake ``time``: each route's call advances it by that route's duration."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def _timed_routes(clock, torch_s, derived_s, calls):
    def route(seconds, name):
        def run(x, y):
            calls.append(name)
            clock.now += seconds
            return (x * y).sum()
        return run

    return route(torch_s, "torch"), route(derived_s, "derived")


@pytest.mark.parametrize("torch_s, derived_s, sizes_say_derived, expected", [
    (1.0, 0.5, False, True),     # derived clearly faster: taken
    (0.5, 1.0, True, False),     # torch's clearly faster: taken
    (1.0, 0.99, False, False),   # within MARGIN: the sizes' choice stays
    (0.99, 1.0, True, True),
])
def test_the_faster_by_more_than_the_margin_wins(
    monkeypatch, torch_s, derived_s, sizes_say_derived, expected
):
    clock, calls = _Clock(), []
    monkeypatch.setattr(crossover, "time", clock)
    by_torch, by_derived = _timed_routes(clock, torch_s, derived_s, calls)
    x = torch.randn(5, requires_grad=True)
    assert crossover.derived_is_faster(by_torch, by_derived, x, torch.randn(5), sizes_say_derived) is expected
    assert x.grad is None  # timed on a copy
    n = calls.count("torch")
    assert n == calls.count("derived") and crossover.WARMUP + crossover.ROUNDS <= n <= (
        crossover.WARMUP + crossover.MAX_ROUNDS)


def test_a_kernel_that_cannot_run_leaves_torchs():
    calls = []

    def by_torch(x, y):
        calls.append("torch")
        return x.sum()

    assert crossover.derived_is_faster(by_torch, lambda x, y: None, torch.randn(3, requires_grad=True),
                                       torch.randn(3), True) is False
