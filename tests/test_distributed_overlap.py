"""Tversky, Jaccard and generalized Dice with ``aggregation="batch", sync_dist=True`` under 2-process
DDP (gloo, CPU): the sums are all-reduced, so each process computes the loss of the whole batch
and the DDP-averaged gradient is the single-process gradient (as ``tests/test_distributed.py``
checks for Dice). Without ``sync_dist`` each process has its own half."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

import lossplug.torch as lt  # noqa: E402

pytestmark = pytest.mark.slow

WORLD = 2
LOSSES = {
    "tversky": lambda sync: lt.TverskyLoss(from_logits=True, alpha=0.3, beta=0.7, gamma=0.75, per_class=True,
                                           aggregation="batch", sync_dist=sync),
    "jaccard": lambda sync: lt.JaccardLoss(from_logits=True, aggregation="batch", sync_dist=sync),
    "generalized_dice": lambda sync: lt.GeneralizedDiceLoss(from_logits=True, aggregation="batch",
                                                            sync_dist=sync),
}


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (4, 5, 5), generator=g)
    y[:2][y[:2] == 2] = 1  # class 2 only in the second half: generalized Dice's weights differ per half
    return x, y


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 1)
    ).double()


def _worker(rank: int, rendezvous: str, out_dir: str):
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD)
    try:
        x, y = _batch()
        part = slice(rank * 2, rank * 2 + 2)
        results = {}
        for name, make in LOSSES.items():
            for sync in (True, False):
                model = torch.nn.parallel.DistributedDataParallel(_model())
                loss = make(sync)(model(x[part]), y[part])
                loss.backward()
                grads = [p.grad.clone() for p in model.parameters()]
                results[name, sync] = {"loss": loss.detach(), "grads": grads}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(f"file://{out / 'rendezvous'}", str(out)), nprocs=WORLD)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", list(LOSSES))
def test_sync_dist_gives_the_whole_batch_loss_and_gradient(ddp_results, name):
    model, (x, y) = _model(), _batch()
    ref = LOSSES[name](False)(model(x), y)
    ref.backward()
    ref_grads = [p.grad for p in model.parameters()]
    for rank in ddp_results:
        result = rank[name, True]
        torch.testing.assert_close(result["loss"], ref.detach(), rtol=1e-12, atol=1e-12)
        for grad, expected in zip(result["grads"], ref_grads, strict=True):
            torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(rank[name, False]["loss"], ref.detach(), rtol=1e-6, atol=0)
