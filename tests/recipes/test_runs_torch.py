"""Every task trains end to end with Lightning in the debug preset and leaves its results."""

from __future__ import annotations

import json

import pytest
from recipe_configs import compose

from recipes.train import run

# Each task once, plus the losses that need their own wiring (one-hot targets, combined losses).
CASES = [("regression", "huber"), ("binary", "weighted_bce"), ("multiclass", "categorical_ce"),
         ("distillation", "kl_div"), ("segmentation", "dice_bce"), ("segmentation_multiclass", "dice_ce"),
         ("regression", "poisson")]  # counts: the raw target, log-rates, the metrics of counts


@pytest.mark.parametrize("task,loss", CASES)
def test_debug_run_leaves_results(task, loss, tmp_path):
    cfg = compose([f"task={task}", f"loss={loss}", "framework=torch", "debug=fast"], output_dir=tmp_path)
    summary = run(cfg)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["metrics"] == summary["metrics"]
    assert (on_disk["task"], on_disk["loss"], on_disk["framework"]) == (task, loss, "torch")
    assert on_disk["backend"].startswith("torch") and on_disk["device"] == "cpu"
    assert on_disk["epochs"] == 2 and on_disk["wall_time_s"] > 0
    assert on_disk["main_metric"] in on_disk["metrics"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # the curves: the losses and every held-out metric of the task, the same series as Keras draws
    assert on_disk["curves"]["metrics"] == [f"val_{m}" for m in on_disk["metrics"]]
    if task.startswith("segmentation"):  # input / target / prediction of held-out images
        from test_pictures import _png_size, expected_prediction_png_size

        assert _png_size(tmp_path / "predictions.png") == expected_prediction_png_size()
        assert len(on_disk["predictions"]["dice"]) == 4
    else:
        assert not (tmp_path / "predictions.png").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    import pandas as pd

    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table["epoch"]) == [0, 1]
    if loss.startswith("dice_"):  # a combined preset: every term logged, train and val
        from lossplug._presets import PRESETS

        terms = [key for key, _ in PRESETS[loss].terms]
        assert {f"{stage}_{key}_loss" for key in terms for stage in ("train", "val")} <= set(table.columns)
    assert {"train_loss", "val_loss", f"val_{on_disk['main_metric']}"} <= set(table.columns)


def test_checkpoint_records_loss_config_not_module(tmp_path):
    import torch

    cfg = compose(["task=binary", "loss=weighted_bce", "debug=fast"], output_dir=tmp_path)
    run(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    hp = ckpt["hyper_parameters"]
    assert hp["loss_config"]["name"] == "weighted_bce" and hp["loss_config"]["pos_weight"] == 10.0
    assert "loss" not in hp and "net" not in hp
    assert "weighted_bce" in (tmp_path / "lightning" / "hparams.yaml").read_text()


def test_epoch_metrics_match_final_numpy_metrics(tmp_path):
    # The last epoch's torchmetrics value (logged in metrics.csv) is the same held-out number the
    # NumPy metric gives on the final model.
    import pandas as pd

    cfg = compose(["task=segmentation_multiclass", "debug=fast"], output_dir=tmp_path)
    summary = run(cfg)
    last = pd.read_csv(tmp_path / "metrics.csv").iloc[-1]
    assert last["val_dice"] == pytest.approx(summary["metrics"]["dice"], abs=1e-5)


def test_tensorboard_logger_writes_events_beside_the_csv(tmp_path):
    cfg = compose(["task=regression", "debug=fast", "logger=tensorboard"], output_dir=tmp_path)
    run(cfg)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "metrics.csv").exists()  # the CSV logger still feeds the report
