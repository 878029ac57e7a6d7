"""Every task trains end to end with Keras in the debug preset, on the current KERAS_BACKEND."""

from __future__ import annotations

import json

import pytest
from recipe_configs import compose

pytestmark = pytest.mark.keras

CASES = [("regression", "mae"), ("binary", "bce"), ("multiclass", "sparse_categorical_ce"),
         ("distillation", "kl_div"), ("segmentation", "dice"), ("segmentation_multiclass", "dice_ce"),
         ("regression", "poisson")]  # counts: the raw target, log-rates, the metrics of counts


@pytest.mark.parametrize("task,loss", CASES)
def test_debug_run_leaves_results(task, loss, tmp_path):
    import keras
    import pandas as pd

    from recipes.train import run

    cfg = compose([f"task={task}", f"loss={loss}", "framework=keras", "debug=fast"], output_dir=tmp_path)
    summary = run(cfg)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["metrics"] == summary["metrics"]
    assert on_disk["framework"] == "keras" and on_disk["backend"].endswith(keras.backend.backend())
    assert on_disk["epochs"] == 2
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table["epoch"]) == [0, 1]
    if loss.startswith("dice_"):  # a combined preset: every term logged, train and val
        from lossplug._presets import PRESETS

        terms = [key for key, _ in PRESETS[loss].terms]
        assert {f"{stage}_{key}_loss" for key in terms for stage in ("train", "val")} <= set(table.columns)
    assert {"train_loss", "val_loss", f"val_{summary['main_metric']}"} <= set(table.columns)
    # The last epoch's logged held-out metric is the final model's metric.
    main = summary["main_metric"]
    assert table[f"val_{main}"].iloc[-1] == pytest.approx(summary["metrics"][main], abs=1e-5)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # the curves: the losses and every held-out metric of the task, the same series as Lightning's
    assert on_disk["curves"]["metrics"] == [f"val_{m}" for m in on_disk["metrics"]]
    if task.startswith("segmentation"):  # input / target / prediction of held-out images
        from test_pictures import _png_size, expected_prediction_png_size

        assert _png_size(tmp_path / "predictions.png") == expected_prediction_png_size()
    # The checkpoint reloads with its loss (lossplug's, or the registered combined one) and no
    # custom_objects.
    from lossplug._spec import spec

    model = keras.models.load_model(tmp_path / "checkpoints" / "last.keras")
    expected = "CombinedLoss" if loss in ("dice_ce", "dice_bce", "dice_focal") else spec(loss).class_name
    assert type(model.loss).__name__ == expected


def test_backup_and_restore_resumes_after_the_first_epoch(tmp_path):
    import pandas as pd

    from recipes.train import run

    base = ["task=regression", "framework=keras", "debug=fast"]
    # An "interrupted" run: one epoch, backup kept (as it is when a run is killed mid-way).
    run(compose(base + ["trainer.max_epochs=1", "callbacks.keras.backup.delete_checkpoint=false"],
                output_dir=tmp_path))
    assert (tmp_path / "backup").exists()
    summary = run(compose(base + ["trainer.max_epochs=3"], output_dir=tmp_path))
    assert summary["epochs"] == 3
    log = pd.read_csv(tmp_path / "keras" / "metrics.csv")
    assert list(log["epoch"]) == [0, 1, 2]  # the second run trained epochs 1 and 2 only
    assert not (tmp_path / "backup").exists()  # deleted once training finished
