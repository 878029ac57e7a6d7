"""Curves of a loss and its gradient against the error, from the NumPy reference functions.

Each input kind of the registry (``LossSpec.inputs``) gets a one-parameter family of inputs,
indexed by an error ``e`` (the losses of one kind share it):

- regression (mse, mae, huber): ``y_true = 0``, ``y_pred = e`` (``e = y_pred - y_true``);
- binary (bce, weighted_bce): ``e = p - y``; ``y = 1, p = 1 + e`` for ``e < 0`` and ``y = 0, p = e`` for
  ``e >= 0``, so the left branch is the positive term and the right one the negative term;
- onehot, labels (categorical_ce, sparse_categorical_ce): three classes, the true one gets
  ``p = 1 - e``, the other two ``e / 2`` each;
- masks (dice): a mask of two foreground and two background pixels, every pixel off by ``e``
  (``y_pred = |y - e|``);
- distributions (kl_div): ``p = (0.5, 0.5)``, ``q = (0.5 + e, 0.5 - e)``;
- scores (hinge): ``y = 1``, ``y_pred = e``; counts (poisson): ``y = 2``, ``y_pred = 2 + e``;
  vectors (cosine similarity): ``y = (1, 0)``, ``y_pred = (cos e, sin e)``.

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
_CLASSES = Curve(0.005, 0.99, "error e = 1 - p(true class)",
                 lambda e: np.tile([1.0, 0.0, 0.0], (e.size, 1)), lambda e, y: _class_probs(e))
_MASKS = Curve(0.005, 0.995, "error e = |y_pred - y_true| at every pixel", _dice_targets,
               lambda e, y: np.abs(y - e[:, None]))
_DISTRIBUTIONS = Curve(
    -0.49, 0.49, "error e = q1 - p1, p = (0.5, 0.5)",
    lambda e: np.full((e.size, 2), 0.5), lambda e, y: np.stack([0.5 + e, 0.5 - e], axis=-1),
)
#: the curve of each input kind (``LossSpec.inputs``, see ``lossplug.tools.inputs``)
CURVES = {
    "regression": _REGRESSION,
    "binary": _BINARY,
    "binary_soft": _BINARY,
    "onehot": _CLASSES,
    "soft": _CLASSES,
    "labels": Curve(_CLASSES.lo, _CLASSES.hi, _CLASSES.xlabel,
                    lambda e: np.zeros(e.size, dtype=np.int64), _CLASSES.predictions),
    "masks": _MASKS,
    "label_map": _MASKS,
    "distributions": _DISTRIBUTIONS,
    "distributions_zeros": _DISTRIBUTIONS,
    "scores": Curve(-2.0, 3.0, "score y_pred for the label y = 1 (margin t * y_pred, t = 2y - 1)",
                    lambda e: np.ones_like(e), lambda e, y: e),
    "scores_pm1": Curve(-2.0, 3.0, "score y_pred for the label y = +1 (margin y * y_pred)",
                        lambda e: np.ones_like(e), lambda e, y: e),
    "counts": Curve(-1.95, 4.0, "error e = y_pred - y_true, count y_true = 2 (y_pred the rate)",
                    lambda e: np.full_like(e, 2.0), lambda e, y: y + e),
    "vectors": Curve(0.0, np.pi, "angle e between y_pred and y_true = (1, 0)",
                     lambda e: np.tile([1.0, 0.0], (e.size, 1)),
                     lambda e, y: np.stack([np.cos(e), np.sin(e)], axis=-1)),
}


def curve_shape(name: str) -> Curve:
    """The inputs drawn for the loss ``name``: the curve of its registry input kind."""
    return CURVES[spec(name).inputs]


def _as_input(name, probs, params):
    """Probabilities as the loss expects them under ``params`` (logits, log-probabilities)."""
    if params.get("from_logits"):
        p = np.clip(probs, 1e-12, 1 - 1e-12)
        sigmoid = spec(name).inputs.startswith("binary") or params.get("activation") == "sigmoid"
        return np.log(p) - np.log1p(-p) if sigmoid else np.log(p)  # softmax(log p) = p
    if params.get("log_input"):  # log-probabilities, or Poisson's log-rates
        return np.log(np.clip(probs, 1e-300, None))
    return probs


def curve(name: str, params: dict | None = None, points: int = 400):
    """``(e, loss, dL/de)`` for the loss ``name`` with ``params``; one loss value per ``e``."""
    import lossplug.numpy as reference

    params = dict(params or {})
    spec(name).validate(params)  # a friendly error before any computation
    params.pop("reduction", None)  # the curve needs one value per point: always "none"
    if "activation" in spec(name).defaults and params.get("from_logits"):
        params.setdefault("activation", "sigmoid")  # the mask is binary: one sigmoid per pixel
    shape = curve_shape(name)
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
        if curve_shape(name).xlabel not in xlabels:
            xlabels.append(curve_shape(name).xlabel)
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
