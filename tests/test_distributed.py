"""Dice with ``aggregation="batch", sync_dist=True`` under 2-process DDP (gloo, CPU).

Each process sees half of the batch. With ``sync_dist`` the Dice sums are all-reduced (with a
differentiable all-reduce), so every process computes the Dice of the whole batch, and after
DDP averages the gradients they equal the single-process gradient of the whole-batch loss.
Without ``sync_dist`` each process computes the Dice of its own half: loss and gradient differ.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

from lossplug.torch import DiceLoss  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2


def _batch():
    """A fixed batch: images (4, 1, 5, 5) and label maps (4, 5, 5) with 3 classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (4, 5, 5), generator=g)
    return x, y


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 1)
    ).double()


def _loss(sync_dist: bool):
    return DiceLoss(from_logits=True, aggregation="batch", sync_dist=sync_dist)


def _worker(rank: int, rendezvous: str, out_dir: str):
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD)
    try:
        x, y = _batch()
        half = x.shape[0] // WORLD
        part = slice(rank * half, (rank + 1) * half)
        results = {}
        for sync_dist in (True, False):
            model = torch.nn.parallel.DistributedDataParallel(_model())
            loss = _loss(sync_dist)(model(x[part]), y[part])
            loss.backward()  # DDP averages the parameter gradients over the processes
            grads = [p.grad.detach().clone() for p in model.parameters()]
            results[sync_dist] = {"loss": loss.detach(), "grads": grads}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """``{sync_dist: [per-rank {"loss", "grads"}]}`` from one spawn of 2 gloo processes."""
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(f"file://{out / 'rendezvous'}", str(out)), nprocs=WORLD)
    per_rank = [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]
    return {sync: [r[sync] for r in per_rank] for sync in (True, False)}


def _single_process():
    model = _model()
    x, y = _batch()
    loss = _loss(sync_dist=False)(model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def reference():
    return _single_process()


def test_sync_dist_gives_whole_batch_loss_and_gradient(ddp_results, reference):
    ref_loss, ref_grads = reference
    results = ddp_results[True]
    for result in results:
        torch.testing.assert_close(result["loss"], ref_loss, rtol=1e-12, atol=1e-12)
        for grad, ref in zip(result["grads"], ref_grads, strict=True):
            torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)


def test_without_sync_dist_each_process_has_its_half(ddp_results, reference):
    ref_loss, ref_grads = reference
    results = ddp_results[False]
    # each process's loss is the Dice of its own half of the batch...
    model, (x, y) = _model(), _batch()
    with torch.no_grad():
        for rank, result in enumerate(results):
            half = slice(2 * rank, 2 * rank + 2)
            torch.testing.assert_close(result["loss"], _loss(False)(model(x[half]), y[half]))
            assert not torch.allclose(result["loss"], ref_loss, rtol=1e-6, atol=0)
    # ...and the averaged gradient is not the whole-batch gradient
    pairs = zip(results[0]["grads"], ref_grads, strict=True)
    assert any(not torch.allclose(g, r, rtol=1e-6, atol=0) for g, r in pairs)


def test_sync_dist_is_a_no_op_without_a_process_group(reference):
    assert not dist.is_initialized()
    ref_loss, _ = reference
    model, (x, y) = _model(), _batch()
    with torch.no_grad():
        torch.testing.assert_close(_loss(sync_dist=True)(model(x), y), ref_loss, rtol=1e-12, atol=0)
