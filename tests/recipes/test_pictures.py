"""The recipes' pictures: predicted masks, curves with the same metrics in both frameworks, and a
comparison chart that shows the differences.

Fast checks on small synthetic inputs here; the debug runs in test_runs_torch.py and
test_runs_keras.py check that a real run writes ``predictions.png`` and which curves it draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recipes import report
from recipes.data import Split
from recipes.tasks import metrics


def _png_size(path) -> tuple[int, int]:
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def expected_prediction_png_size(n: int = report.PREDICTION_IMAGES) -> tuple[int, int]:
    inches = (4 * report.PANEL_INCHES, n * report.PANEL_INCHES + 0.9)
    return tuple(round(x * report.PREDICTION_DPI) for x in inches)


# --- predictions.png ------------------------------------------------------------------------------


def _multiclass_split():
    # two 6x6 test images: image 0 a 2x2 circle (class 1), image 1 a 3x3 square (class 2)
    y = np.zeros((2, 6, 6), dtype=np.int64)
    y[0, 1:3, 1:3] = 1
    y[1, 2:5, 2:5] = 2
    x = (y > 0).astype(np.float32)[..., None]
    return Split(x, y, x, y, n_outputs=3, info={"classes": ["background", "circle", "square"]})


def test_prediction_grid_for_multiclass_maps(tmp_path):
    split = _multiclass_split()
    outputs = np.zeros((2, 6, 6, 3))
    outputs[..., 0] = 1.0
    outputs[0, 1:3, 1:3] = [0, 5, 0]  # image 0: exactly right
    outputs[1, 2:4, 2:5] = [0, 0, 5]  # image 1: two of the three square rows (6 of 9 pixels)
    info = report.plot_predictions(split, outputs, tmp_path / "p.png", "title", n=2)
    assert info["indices"] == [0, 1]
    # by hand: image 0 Dice 1; image 1: 2*6 / (6 + 9)
    assert info["dice"] == pytest.approx([1.0, 12 / 15])
    assert _png_size(tmp_path / "p.png") == expected_prediction_png_size(2)


def test_prediction_grid_for_binary_masks_thresholds_logits_at_zero(tmp_path):
    y = np.zeros((3, 8, 8, 1), dtype=np.float32)
    y[:, 2:6, 2:6] = 1.0
    logits = np.where(y > 0, 3.0, -3.0)
    logits[1] = -3.0  # image 1: nothing predicted
    split = Split(y, y, y, y, n_outputs=1, info={"classes": ["background", "shape"]})
    info = report.plot_predictions(split, logits, tmp_path / "p.png", "title")
    assert info["dice"] == [1.0, 0.0, 1.0]
    assert _png_size(tmp_path / "p.png") == expected_prediction_png_size(3)


def test_write_run_draws_predictions_for_segmentation_only(tmp_path):
    split = _multiclass_split()
    summary = {"task": "t", "loss": "dice", "framework": "torch", "backend": "torch", "metrics": {}}
    out = report.write_run(tmp_path, dict(summary), [], split=split, outputs=np.zeros((2, 6, 6, 3)),
                           kind="segmentation")
    assert out["files"]["predictions"] == str(tmp_path / "predictions.png")
    assert (tmp_path / "predictions.png").exists()
    (tmp_path / "predictions.png").unlink()
    report.write_run(tmp_path, dict(summary), [], split=split, outputs=np.zeros((2, 6, 6, 3)),
                     kind="multiclass")
    assert not (tmp_path / "predictions.png").exists()


# --- the same curves in both frameworks --------------------------------------------------------------


# (kind, n_outputs, y_test shape, dtype, outputs shape) as the data sets make them
_TASK_SHAPES = [
    ("regression", 1, (4, 1), np.float32, (4, 1)),
    ("binary", 1, (4, 1), np.float32, (4, 1)),
    ("multiclass", 10, (4,), np.int64, (4, 10)),
    ("distillation", 10, (4,), np.int64, (4, 10)),
    ("segmentation", 1, (4, 6, 6, 1), np.float32, (4, 6, 6, 1)),
    ("segmentation", 3, (4, 6, 6), np.int64, (4, 6, 6, 3)),
]


@pytest.mark.parametrize("kind,n_outputs,y_shape,dtype,out_shape", _TASK_SHAPES)
def test_lightning_logs_every_numpy_metric(kind, n_outputs, y_shape, dtype, out_shape):
    # the Keras path logs exactly the names of recipes.tasks.metrics; the Lightning path must too
    pytest.importorskip("torchmetrics")
    from recipes.lightning_path import val_metrics

    logged = set(val_metrics(kind, n_outputs))
    if kind == "segmentation" and n_outputs == 3:
        logged |= {"dice_circle", "dice_square"}  # the per-class Dice vector, one series a class
    y = (np.arange(np.prod(y_shape)).reshape(y_shape) % max(n_outputs, 2)).astype(dtype)
    split = Split(y, y, y, y, n_outputs=n_outputs, soft_test=np.full((4, 10), 0.1),
                  info={"classes": ["background", "circle", "square"]})
    assert logged == set(metrics(kind, split, np.zeros(out_shape)))


def test_curves_draw_the_task_metrics_in_their_order(tmp_path):
    table = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                          "val_pixel_accuracy": [0.5, 0.7], "val_dice": [0.2, 0.4],
                          "learning_rate": [0.01, 0.01], "val_extra": [1, 2]})
    series = report.plot_curves(table, tmp_path / "c.png", "t", ["dice", "pixel_accuracy"])
    assert series == {"loss": ["train_loss", "val_loss"], "metrics": ["val_dice", "val_pixel_accuracy"]}
    assert _png_size(tmp_path / "c.png") == (1000, 360)


# --- the comparison chart -------------------------------------------------------------------------


def _sweep_table(metric, values, **reference):
    n = len(values)
    return pd.DataFrame({"run": [str(i) for i in range(n)], "task": ["t"] * n,
                         "loss": ["mse", "mae", "huber", "mse"][:n],
                         "framework": ["torch", "torch", "torch", "keras"][:n],
                         "backend": ["torch 2", "torch 2", "torch 2", "keras 3 / jax"][:n],
                         metric: values, **{k: [v] * n for k, v in reference.items()}})


def test_comparison_axis_fits_the_values_and_labels_the_reference(tmp_path):
    table = _sweep_table("r2", [0.812, 0.835, 0.828, 0.809], linear_regression_r2=0.8213)
    info = report._bar_chart(table, [{"main_metric": "r2", "task": "regression"}], tmp_path / "c.png")
    lo, hi = info["xlim"]
    assert 0.78 < lo < 0.809 and 0.835 < hi < 0.9  # not from 0: a 0.026 spread is visible
    assert info["baseline"] == 0.8213 and info["baseline_on_axis"]
    assert info["baseline_label"] == "baseline: scikit-learn LinearRegression (0.8213)"
    assert info["labels"] == ["mse · torch", "mae · torch", "huber · torch", "mse · keras (jax)"]
    assert _png_size(tmp_path / "c.png") == (880, round((1.3 + 0.45 * 4) * 110))


def test_comparison_keeps_the_runs_apart_when_the_baseline_is_far(tmp_path):
    table = _sweep_table("dice", [0.9907, 0.9931, 0.9897], threshold_dice=0.8964)
    info = report._bar_chart(table, [{"main_metric": "dice", "task": "segmentation"}], tmp_path / "c.png")
    lo, hi = info["xlim"]
    assert 0.98 < lo < 0.9897 and 0.9931 < hi < 1.0  # the axis spans the runs, not the baseline
    assert info["baseline"] == 0.8964 and not info["baseline_on_axis"]
    assert info["baseline_label"] == "baseline: threshold the image at 0.5 (0.8964)"


def test_comparison_without_a_reference_uses_the_first_run(tmp_path):
    table = _sweep_table("accuracy", [0.95, 0.97])
    info = report._bar_chart(table, [{"main_metric": "accuracy", "task": "multiclass"}], tmp_path / "c.png")
    assert info["baseline"] == 0.95
    assert info["baseline_label"] == "baseline: the first run, mse · torch (0.9500)"


def test_comparison_tells_repeated_runs_apart(tmp_path):
    table = _sweep_table("dice", [0.5, 0.6])
    table["loss"] = "dice"
    info = report._bar_chart(table, [{"main_metric": "dice", "task": "segmentation"}], tmp_path / "c.png")
    assert info["labels"] == ["dice · torch [run 0]", "dice · torch [run 1]"]


def test_shapes_records_the_threshold_baseline():
    from recipes.data import shapes

    split = shapes(n_train=4, n_test=16)
    pred, true = split.x_test[..., 0] > 0.5, split.y_test[..., 0] > 0.5
    by_hand = 2 * np.sum(pred & true) / (np.sum(pred) + np.sum(true))
    assert split.info["threshold_dice"] == pytest.approx(by_hand)
    assert 0.5 < split.info["threshold_dice"] < 1.0
    assert "threshold_dice" not in shapes(n_train=4, n_test=4, multiclass=True).info
