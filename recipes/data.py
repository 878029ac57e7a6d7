"""Data sets for the recipes: scikit-learn's bundled sets and generated images. Nothing downloads.

Every builder returns a :class:`Split` of NumPy arrays on a fixed seeded train/test split. Features
are standardised with the training split's statistics. The test split is held out: it is used for
the per-epoch validation curves and for the final metrics, never for fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """Train and test arrays plus what the model builder and metrics need to know."""

    x_train: np.ndarray
    y_train: np.ndarray          # class labels, regression targets or masks (not yet loss targets)
    x_test: np.ndarray
    y_test: np.ndarray
    n_outputs: int               # model outputs: 1 for regression/binary, C for C classes
    soft_train: np.ndarray | None = None   # teacher probabilities (distillation only)
    soft_test: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # reference numbers recorded in summary.json

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(x, y, test_size, seed, stratify=None):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=stratify)


def _standardise(x_train, x_test):
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _limit(split: Split, max_samples: int | None) -> Split:
    """Keep the first ``max_samples`` of each split (the debug preset)."""
    if not max_samples:
        return split
    n = int(max_samples)
    for name in ("x_train", "y_train", "x_test", "y_test", "soft_train", "soft_test"):
        value = getattr(split, name)
        if value is not None:
            setattr(split, name, value[:n])
    return split


def diabetes(*, test_size: float = 0.25, seed: int = 0, max_samples: int | None = None,
             target: str = "standardised") -> Split:
    """scikit-learn's diabetes regression set (442 × 10), target standardised with train statistics.

    ``info["linear_regression_r2"]`` is scikit-learn's ``LinearRegression`` R² on the same split, the
    reference the regression recipes are compared with. ``target="counts"`` keeps the raw target,
    a positive integer (disease progression after a year, 25 to 346), for the Poisson loss; the
    reference is then scikit-learn's ``PoissonRegressor`` (the same log-linear model, fitted by
    L-BFGS without a penalty): ``info["poisson_regressor_d2"]`` and ``["poisson_regressor_deviance"]``.
    """
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, PoissonRegressor
    from sklearn.metrics import d2_tweedie_score, mean_poisson_deviance

    if target not in ("standardised", "counts"):
        raise ValueError(f"diabetes target must be 'standardised' or 'counts', not {target!r}")
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = _split(x, y, test_size, seed)
    x_train, x_test = _standardise(x_train, x_test)
    if target == "counts":
        glm = PoissonRegressor(alpha=0.0, max_iter=1000).fit(x_train, y_train)
        rate = glm.predict(x_test)
        info = {"poisson_regressor_d2": float(d2_tweedie_score(y_test, rate, power=1)),
                "poisson_regressor_deviance": float(mean_poisson_deviance(y_test, rate)),
                "count_range": [int(y.min()), int(y.max())]}
        counts = (y_train.astype(np.float32)[:, None], y_test.astype(np.float32)[:, None])
        split = Split(x_train, counts[0], x_test, counts[1], n_outputs=1, info=info)
        return _limit(split, max_samples)
    mean, std = y_train.mean(), y_train.std()
    y_train = ((y_train - mean) / std).astype(np.float32)[:, None]
    y_test = ((y_test - mean) / std).astype(np.float32)[:, None]
    reference = LinearRegression().fit(x_train, y_train).score(x_test, y_test)
    split = Split(x_train, y_train, x_test, y_test, n_outputs=1,
                  info={"linear_regression_r2": float(reference)})
    return _limit(split, max_samples)


def digits(*, test_size: float = 0.25, seed: int = 0, max_samples: int | None = None) -> Split:
    """scikit-learn's 8×8 digits (1797 × 64), ten classes, stratified split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = _split(x, y, test_size, seed, stratify=y)
    x_train, x_test = _standardise(x_train, x_test)
    split = Split(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), n_outputs=10)
    return _limit(split, max_samples)


def digits_one_vs_rest(*, positive: int = 9, keep_positive: float = 0.25, test_size: float = 0.3,
                       seed: int = 0, max_samples: int | None = None) -> Split:
    """Imbalanced binary digits: ``positive`` against the rest, keeping ``keep_positive`` of positives.

    Targets are 0/1 floats of shape ``(N, 1)``. ``info`` records the positive fraction and
    ``balanced_pos_weight`` = negatives / positives on the training split.
    """
    from sklearn.datasets import load_digits

    x, labels = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    is_pos = labels == positive
    keep = ~is_pos | (rng.random(len(labels)) < keep_positive)
    x, y = x[keep], is_pos[keep].astype(np.float32)
    x_train, x_test, y_train, y_test = _split(x, y, test_size, seed, stratify=y)
    x_train, x_test = _standardise(x_train, x_test)
    split = _limit(Split(x_train, y_train[:, None], x_test, y_test[:, None], n_outputs=1), max_samples)
    n_pos = float(split.y_train.sum())
    split.info = {"positive_digit": positive, "positive_fraction_train": n_pos / len(split.y_train),
                  "positives_test": int(split.y_test.sum()),
                  "balanced_pos_weight": (len(split.y_train) - n_pos) / max(n_pos, 1.0)}
    return split


def digits_distillation(*, temperature: float = 2.0, teacher_hidden: int = 64, test_size: float = 0.25,
                        seed: int = 0, max_samples: int | None = None) -> Split:
    """Digits with soft targets: a scikit-learn MLP teacher's probabilities at ``temperature``.

    The teacher is fitted on the training split only; the student learns its softened
    probabilities (``soft_train``) and is scored on the true test labels. ``info`` records the
    teacher's test accuracy.
    """
    from sklearn.neural_network import MLPClassifier

    split = digits(test_size=test_size, seed=seed)
    teacher = MLPClassifier(hidden_layer_sizes=(teacher_hidden,), max_iter=300, random_state=seed)
    teacher.fit(split.x_train, split.y_train)

    def soften(x):
        # The teacher's logits: the output layer before its softmax.
        hidden = np.maximum(x @ teacher.coefs_[0] + teacher.intercepts_[0], 0.0)
        logits = (hidden @ teacher.coefs_[1] + teacher.intercepts_[1]) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    split.soft_train, split.soft_test = soften(split.x_train), soften(split.x_test)
    split.info = {"teacher": f"sklearn MLPClassifier({teacher_hidden})", "temperature": temperature,
                  "teacher_accuracy": float(teacher.score(split.x_test, split.y_test))}
    return _limit(split, max_samples)


def _draw_shapes(rng, size, max_shapes, min_radius, max_radius):
    """One label map: 0 background, 1 circle, 2 square; shapes may overlap (the later one wins)."""
    labels = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(1, max_shapes + 1)):
        r = rng.integers(min_radius, max_radius + 1)
        cy, cx = rng.integers(r, size - r, size=2)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            labels[inside] = 1
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            labels[inside] = 2
    return labels


def shapes(*, n_train: int = 512, n_test: int = 128, size: int = 32, multiclass: bool = False,
           max_shapes: int = 3, min_radius: int = 4, max_radius: int = 7, noise: float = 0.3,
           seed: int = 0, max_samples: int | None = None) -> Split:
    """Generated grey images of circles and squares on Gaussian noise, shape ``(N, size, size, 1)``.

    Binary: the mask is every shape (``(N, size, size, 1)`` floats). Multiclass: the label map
    0 background / 1 circle / 2 square (``(N, size, size)`` integers). Shapes are drawn with
    intensity 1 on a background of 0, then noise of standard deviation ``noise`` is added.
    Train and test come from different seeds of the same generator.
    """
    def draw(n, rng):
        labels = np.stack([_draw_shapes(rng, size, max_shapes, min_radius, max_radius) for _ in range(n)])
        images = (labels > 0).astype(np.float32) + rng.normal(0.0, noise, labels.shape).astype(np.float32)
        return images[..., None], labels

    x_train, l_train = draw(n_train, np.random.default_rng([seed, 0]))
    x_test, l_test = draw(n_test, np.random.default_rng([seed, 1]))
    if multiclass:
        split = Split(x_train, l_train, x_test, l_test, n_outputs=3)
    else:
        mask = lambda labels: (labels > 0).astype(np.float32)[..., None]  # noqa: E731
        split = Split(x_train, mask(l_train), x_test, mask(l_test), n_outputs=1)
    split = _limit(split, max_samples)
    split.info = {"image_size": size, "classes": ["background", "circle", "square"] if multiclass
                  else ["background", "shape"]}
    if not multiclass:
        # the baseline a model must beat: the input thresholded at 0.5 (shapes are 1, background 0)
        pred, true = split.x_test[..., 0] > 0.5, split.y_test[..., 0] > 0.5
        split.info["threshold_dice"] = 2.0 * float((pred & true).sum()) / float(pred.sum() + true.sum())
    return split
