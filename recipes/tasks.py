"""What each task feeds its loss, and the metrics it reports, in NumPy (shared by both frameworks).

Tasks (``task.kind``): ``regression``, ``binary``, ``multiclass``, ``distillation``,
``segmentation`` (binary when the data has one output, multiclass otherwise). ``task.target``
picks the loss target: ``value`` (as the data has it), ``onehot`` (class labels as one-hot rows)
or ``soft`` (the teacher's probabilities). Arrays here are channels-last, as Keras wants them;
:func:`to_torch_layout` moves image axes for torch.
"""

from __future__ import annotations

import numpy as np

from recipes.data import Split

KINDS = ("regression", "counts", "binary", "multiclass", "distillation", "segmentation")


def loss_targets(split: Split, target: str) -> tuple[np.ndarray, np.ndarray]:
    """The (train, test) targets given to the loss."""
    if target == "value":
        return split.y_train, split.y_test
    if target == "onehot":
        eye = np.eye(split.n_outputs, dtype=np.float32)
        return eye[split.y_train], eye[split.y_test]
    if target == "soft":
        if split.soft_train is None:
            raise ValueError("task.target=soft needs a data set with teacher probabilities")
        return split.soft_train, split.soft_test
    raise ValueError(f"unknown task.target {target!r}; choose value, onehot or soft")


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    """Channels-last images ``(N, H, W, C)`` to channels-first ``(N, C, H, W)``; others unchanged."""
    return np.moveaxis(array, -1, 1) if array.ndim == 4 else array


def from_torch_layout(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if array.ndim == 4 else array


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|) over every pixel of the set (1 when both are empty)."""
    inter, total = float(np.sum(pred & true)), float(np.sum(pred) + np.sum(true))
    return 1.0 if total == 0 else 2.0 * inter / total


def poisson_deviance(y: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """The unit Poisson deviance 2(y log(y / rate) - (y - rate)), with y log y = 0 at y = 0."""
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / rate), 0.0)
    return 2.0 * (ylogy - (y - rate))


def metrics(kind: str, split: Split, outputs: np.ndarray) -> dict[str, float]:
    """Held-out metrics from the model's raw ``outputs`` (channels-last logits or values).

    regression: r2, mse, mae · counts (the outputs are log-rates, the rate is their exp): d2 (the
    fraction of the Poisson deviance explained, scikit-learn's ``d2_tweedie_score(power=1)``),
    poisson_deviance (its mean, ``mean_poisson_deviance``), mae and r2 of the rate · binary:
    accuracy, recall, precision, f1 (threshold 0.5 on the sigmoid) · multiclass: accuracy ·
    distillation: accuracy (true labels) and teacher_agreement ·
    segmentation: dice (binary: the shape mask; multiclass: mean over foreground classes, with
    dice_<class> for each) and pixel_accuracy.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    y = split.y_test
    if kind == "regression":
        err = outputs.reshape(-1) - y.reshape(-1)
        ss_tot = np.sum((y.reshape(-1) - y.mean()) ** 2)
        return {"r2": float(1.0 - np.sum(err**2) / ss_tot), "mse": float(np.mean(err**2)),
                "mae": float(np.mean(np.abs(err)))}
    if kind == "counts":
        rate, y = np.exp(outputs.reshape(-1)), y.reshape(-1).astype(np.float64)
        deviance = poisson_deviance(y, rate)
        null = poisson_deviance(y, np.full_like(y, y.mean()))
        return {"d2": float(1.0 - deviance.sum() / null.sum()),
                "poisson_deviance": float(deviance.mean()), "mae": float(np.mean(np.abs(rate - y))),
                "r2": float(1.0 - np.sum((rate - y) ** 2) / np.sum((y - y.mean()) ** 2))}
    if kind == "binary":
        pred, true = _sigmoid(outputs.reshape(-1)) > 0.5, y.reshape(-1) > 0.5
        tp, fp, fn = np.sum(pred & true), np.sum(pred & ~true), np.sum(~pred & true)
        recall = tp / max(tp + fn, 1)
        precision = tp / max(tp + fp, 1)
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
        return {"accuracy": float(np.mean(pred == true)), "recall": float(recall),
                "precision": float(precision), "f1": float(f1)}
    if kind in ("multiclass", "distillation"):
        pred = outputs.argmax(-1)
        result = {"accuracy": float(np.mean(pred == y))}
        if kind == "distillation":
            result["teacher_agreement"] = float(np.mean(pred == split.soft_test.argmax(-1)))
        return result
    if kind == "segmentation":
        if split.n_outputs == 1:
            pred, true = _sigmoid(outputs[..., 0]) > 0.5, y[..., 0] > 0.5
            return {"dice": _dice(pred, true), "pixel_accuracy": float(np.mean(pred == true))}
        pred = outputs.argmax(-1)
        names = split.info.get("classes", [str(c) for c in range(split.n_outputs)])
        per_class = {f"dice_{names[c]}": _dice(pred == c, y == c) for c in range(1, split.n_outputs)}
        return {"dice": float(np.mean(list(per_class.values()))), **per_class,
                "pixel_accuracy": float(np.mean(pred == y))}
    raise ValueError(f"unknown task.kind {kind!r}; choose one of {', '.join(KINDS)}")
