"""Curves of a loss and its gradient against the error, from the NumPy reference functions.

Each loss family gets a one-parameter family of inputs, indexed by an error ``e``:

- mse, mae, huber: ``y_true = 0``, ``y_pred = e`` (``e = y_pred - y_true``);
- bce, weighted_bce: ``e = p - y``; ``y = 1, p = 1 + e`` for ``e < 0`` and ``y = 0, p = e`` for
  ``e >= 0``, so the left branch is the positive term and the right one the negative term;
- categorical_ce, sparse_categorical_ce: three classes, the true one gets ``p = 1 - e``, the other
  two ``e / 2`` each;
- dice: a mask of two foreground and two background pixels, every pixel off by ``e``
  (``y_pred = |y - e|``);
- kl_div: ``p = (0.5, 0.5)``, ``q = (0.5 + e, 0.5 - e)``.

With ``from_logits=True`` the same probabilities are passed as logits (``log_input``: as logs).
The gradient is ``dL/de`` with ``y_true`` held fixed, by central differences on the float64
reference. Plots use matplotlib's Agg backend and import no deep-learning framework.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lossplug._optional import missing
from lossplug._spec import spec

FIGSIZE = (10.0, 4.0)  # inches; at the default 100 dpi a 1000 x 400 pixel PNG
STEP = 1e-6


@dataclass(frozen=True)
class Curve:
    """The inputs of one loss family as functions of the error ``e``."""

    lo: float
    hi: float
    xlabel: str
    targets: Callable | None  # e -> y_true
    predictions: Callable  # (e, y_true) -> y_pred, as probabilities (or values)


def _elementwise_targets(e):
    return np.zeros_like(e)


def _binary_targets(e):
    return (e < 0).astype(float)


def _class_probs(e):
    return np.stack([1.0 - e, e / 2, e / 2], axis=-1)


def _dice_targets(e):
    return np.tile([1.0, 1.0, 0.0, 0.0], (e.size, 1))


_REGRESSION = Curve(-3.0, 3.0, "error e = y_pred - y_true", _elementwise_targets, lambda e, y: e)
_BINARY = Curve(-0.99, 0.99, "error e = p - y  (y = 1 left of 0, y = 0 right)", _binary_targets,
                lambda e, y: y + e)
_CLASSES = Curve(0.005, 0.99, "error e = 1 - p(true class)", None, lambda e, y: _class_probs(e))
CURVES = {
    "mse": _REGRESSION,
    "mae": _REGRESSION,
    "huber": _REGRESSION,
    "bce": _BINARY,
    "weighted_bce": _BINARY,
    "categorical_ce": Curve(
        _CLASSES.lo, _CLASSES.hi, _CLASSES.xlabel,
        lambda e: np.tile([1.0, 0.0, 0.0], (e.size, 1)), _CLASSES.predictions,
    ),
    "sparse_categorical_ce": Curve(
        _CLASSES.lo, _CLASSES.hi, _CLASSES.xlabel,
        lambda e: np.zeros(e.size, dtype=np.int64), _CLASSES.predictions,
    ),
    "dice": Curve(0.005, 0.995, "error e = |y_pred - y_true| at every pixel", _dice_targets,
                  lambda e, y: np.abs(y - e[:, None])),
    "kl_div": Curve(
        -0.49, 0.49, "error e = q1 - p1, p = (0.5, 0.5)",
        lambda e: np.full((e.size, 2), 0.5), lambda e, y: np.stack([0.5 + e, 0.5 - e], axis=-1),
    ),
}


def _as_input(name, probs, params):
    """Probabilities as the loss expects them under ``params`` (logits, log-probabilities)."""
    if params.get("from_logits"):
        p = np.clip(probs, 1e-12, 1 - 1e-12)
        sigmoid = name in ("bce", "weighted_bce") or params.get("activation") == "sigmoid"
        return np.log(p) - np.log1p(-p) if sigmoid else np.log(p)  # softmax(log p) = p
    if params.get("log_input"):
        return np.log(np.clip(probs, 1e-300, None))
    return probs


def curve(name: str, params: dict | None = None, points: int = 400):
    """``(e, loss, dL/de)`` for the loss ``name`` with ``params``; one loss value per ``e``."""
    import lossplug.numpy as reference

    params = dict(params or {})
    spec(name).validate(params)  # a friendly error before any computation
    params.pop("reduction", None)  # the curve needs one value per point: always "none"
    if name == "dice" and params.get("from_logits"):
        params.setdefault("activation", "sigmoid")  # the mask is binary: one sigmoid per pixel
    shape = CURVES[name]
    fn = getattr(reference, name)
    e = np.linspace(shape.lo, shape.hi, points)
    y = shape.targets(e)

    def loss_at(err):
        y_pred = _as_input(name, shape.predictions(err, y), params)
        return np.asarray(fn(y_pred, y, **params, reduction="none"))

    loss = loss_at(e)
    grad = (loss_at(e + STEP) - loss_at(e - STEP)) / (2 * STEP)
    return e, loss, grad


def label(name: str, params: dict) -> str:
    return name + ("" if not params else " (" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")")


def plot(losses: Sequence[tuple[str, dict]], out: str, dpi: int = 100, title: str | None = None) -> None:
    """Write a PNG with the loss (left) and its gradient (right) for each ``(name, params)``."""
    try:
        import matplotlib
    except ImportError as exc:
        raise missing("lossplug plot", "matplotlib", "plot", exc) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=dpi)
    xlabels = []
    for name, params in losses:
        e, loss, grad = curve(name, params)
        ax_loss.plot(e, loss, label=label(name, params))
        ax_grad.plot(e, grad, label=label(name, params))
        if CURVES[name].xlabel not in xlabels:
            xlabels.append(CURVES[name].xlabel)
    for ax, what in ((ax_loss, "loss"), (ax_grad, "gradient dL/de")):
        ax.set_title(what)
        ax.set_xlabel("\n".join(xlabels), fontsize=8 if len(xlabels) > 1 else 10)
        ax.axhline(0.0, color="0.8", linewidth=0.8)
        ax.grid(alpha=0.3)
    low, high = ax_grad.get_ylim()
    if high - low > 40:  # BCE-like gradients blow up near p = 0 and 1: a symmetric log scale
        ax_grad.set_yscale("symlog", linthresh=1.0)
        ax_grad.set_title("gradient dL/de (symmetric log scale)")
    ax_loss.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, format="png")
    plt.close(fig)
