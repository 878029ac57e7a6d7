"""What a run leaves behind: per-epoch ``metrics.csv``, ``curves.png``, ``summary.json``, and for
segmentation ``predictions.png`` (input / target / prediction of a few held-out images); for a
multirun, ``comparison.{md,csv,png}`` written by :class:`ComparisonCallback`.

The curves show the same series in both frameworks: the losses, then ``val_<name>`` for each
name of :func:`recipes.tasks.metrics` (the Lightning path logs every one of them each epoch, the
Keras path adds them to its epoch logs), in that order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback


def epoch_table(csv_paths: list[str | Path], framework: str) -> pd.DataFrame:
    """One row per epoch (0-based ``epoch``) from Lightning's or Keras's CSV logs.

    ``csv_paths`` are in time order (a resumed Lightning run has the part before the interruption
    first); for an epoch logged twice the later row wins.
    """
    table = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    if framework == "torch":  # Lightning writes train and val rows separately: merge per epoch
        table = table.drop(columns=["step"], errors="ignore").groupby("epoch", as_index=False).last()
    else:  # Keras names the training loss "loss" (and a CombinedLoss's terms "<term>_loss")
        table = table.rename(columns={c: f"train_{c}" for c in table.columns
                                      if c == "loss" or (c.endswith("_loss") and not c.startswith("val_"))})
        table = table.drop_duplicates("epoch", keep="last")
    return table.sort_values("epoch").reset_index(drop=True)


def curve_series(table: pd.DataFrame, metric_names: list[str]) -> dict[str, list[str]]:
    """The columns the curves draw: the losses, and ``val_<name>`` for the task's metric names."""
    return {"loss": [c for c in ("train_loss", "val_loss") if c in table],
            "metrics": [f"val_{m}" for m in metric_names if f"val_{m}" in table]}


def plot_curves(table: pd.DataFrame, path: Path, title: str, metric_names: list[str]) -> dict:
    """Loss curves (train, val) on the left, the held-out metrics on the right; returns the series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve_series(table, metric_names)
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = table["epoch"] + 1
    for col in series["loss"]:
        ax_loss.plot(epochs, table[col], marker=".", label=col)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for col in series["metrics"]:
        ax_metric.plot(epochs, table[col], marker=".", label=col)
    ax_metric.set(xlabel="epoch", title="held-out metrics")
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    for ax in (ax_loss, ax_metric):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return series


# --- segmentation: a picture of the predicted masks ----------------------------------------------

PREDICTION_IMAGES = 4   # held-out images in predictions.png (the first ones of the test split)
PANEL_INCHES = 2.2      # each panel; the figure is 4 panels wide
PREDICTION_DPI = 100


def _class_colours(n_classes: int):
    from matplotlib.colors import ListedColormap

    # background black, then distinct colours (tab10's orange, blue, green, ...)
    palette = ["#000000", "#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    return ListedColormap(palette[:max(n_classes, 2)])


def prediction_masks(split, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(target, predicted)`` label maps ``(N, H, W)`` of the test split from the model's outputs."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if split.n_outputs == 1:  # binary: threshold 0.5 on the sigmoid, as the metrics do
        return (split.y_test[..., 0] > 0.5).astype(int), (outputs[..., 0] > 0.0).astype(int)
    return np.asarray(split.y_test).astype(int), outputs.argmax(-1)


def plot_predictions(split, outputs: np.ndarray, path: Path, title: str,
                     n: int = PREDICTION_IMAGES) -> dict:
    """A grid with one held-out image per row: input, target, prediction, errors (red).

    Returns what it drew: the test indices, and each image's Dice (binary: of the mask; multiclass:
    the mean over the foreground classes present in the target or the prediction).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    target, predicted = prediction_masks(split, outputs)
    n = min(n, len(target))
    n_classes = max(split.n_outputs, 2)
    names = split.info.get("classes") or [str(c) for c in range(n_classes)]
    cmap = _class_colours(n_classes)
    fig, axes = plt.subplots(n, 4, figsize=(4 * PANEL_INCHES, n * PANEL_INCHES + 0.9), squeeze=False)
    scores = []
    for row in range(n):
        t, p = target[row], predicted[row]
        score = _image_dice(t, p, n_classes)
        scores.append(score)
        image = np.asarray(split.x_test[row])
        image = image[..., 0] if image.ndim == 3 else image
        panels = [(image, "gray", None, "input"), (t, cmap, (0, n_classes - 1), "target"),
                  (p, cmap, (0, n_classes - 1), f"prediction (Dice {score:.3f})")]
        for ax, (data, colours, limits, label) in zip(axes[row], panels, strict=False):
            vmin, vmax = limits or (None, None)
            ax.imshow(data, cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"#{row} {label}" if label == "input" else label, fontsize=9)
        errors = np.zeros(t.shape + (4,))
        errors[t != p] = (0.85, 0.1, 0.1, 1.0)
        axes[row][3].imshow(image, cmap="gray")
        axes[row][3].imshow(errors, interpolation="nearest")
        axes[row][3].set_title(f"errors: {int((t != p).sum())} px", fontsize=9)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=cmap(c), label=names[c]) for c in range(n_classes)]
    handles.append(Patch(color=(0.85, 0.1, 0.1), label="wrong pixel"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.45 / (n * PANEL_INCHES + 0.9), 1, 1))
    fig.savefig(path, dpi=PREDICTION_DPI)
    plt.close(fig)
    return {"indices": list(range(n)), "dice": scores}


def _image_dice(target: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Dice of one image: the mask (binary) or the mean over foreground classes present."""
    values = []
    for c in range(1, n_classes):
        t, p = target == c, predicted == c
        total = t.sum() + p.sum()
        if total:
            values.append(2.0 * float((t & p).sum()) / float(total))
    return float(np.mean(values)) if values else 1.0


def write_run(out_dir: Path, summary: dict, csv_paths: list[str | Path], split=None,
              outputs: np.ndarray | None = None, kind: str | None = None) -> dict:
    """Write ``metrics.csv`` and ``curves.png`` (when there is a CSV log), ``predictions.png``
    (``kind="segmentation"``, given the test ``split`` and the model's ``outputs``) and
    ``summary.json``."""
    csv_paths = [p for p in csv_paths if Path(p).exists()]
    title = f"{summary['task']} · {summary['loss']} · {summary['framework']} ({summary['backend']})"
    files = {}
    if csv_paths:
        table = epoch_table(csv_paths, summary["framework"])
        table.to_csv(out_dir / "metrics.csv", index=False)
        summary["curves"] = plot_curves(table, out_dir / "curves.png", title, list(summary["metrics"]))
        files.update(metrics=str(out_dir / "metrics.csv"), curves=str(out_dir / "curves.png"))
    if kind == "segmentation" and split is not None and outputs is not None:
        summary["predictions"] = plot_predictions(split, outputs, out_dir / "predictions.png", title)
        files["predictions"] = str(out_dir / "predictions.png")
    if files:
        summary["files"] = files
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def comparison(sweep_dir: Path) -> pd.DataFrame | None:
    """Collect every ``summary.json`` under ``sweep_dir`` and write the comparison table and chart."""
    summaries = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("*/summary.json"))]
    if not summaries:
        return None
    rows = [{"run": s["run"], "task": s["task"], "loss": s["loss"], "framework": s["framework"],
             "backend": s["backend"], **s["metrics"], **_numeric(s["reference"]),
             "wall_time_s": round(s["wall_time_s"], 1)}
            for s in summaries]
    table = pd.DataFrame(rows)
    table.to_csv(sweep_dir / "comparison.csv", index=False)
    (sweep_dir / "comparison.md").write_text(_markdown(table) + "\n")
    _bar_chart(table, summaries, sweep_dir / "comparison.png")
    return table


def _numeric(reference: dict) -> dict:
    """The reference figures that are numbers (e.g. ``linear_regression_r2``), as columns."""
    return {k: v for k, v in reference.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _markdown(table: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


# The task reference each main metric is compared with, when the data set records one.
BASELINES = {
    "r2": ("linear_regression_r2", "scikit-learn LinearRegression"),
    "d2": ("poisson_regressor_d2", "scikit-learn PoissonRegressor"),
    "accuracy": ("teacher_accuracy", "the teacher (scikit-learn MLP)"),
    "dice": ("threshold_dice", "threshold the image at 0.5"),
}


def baseline(table: pd.DataFrame, metric: str, labels: list[str]) -> tuple[float, str]:
    """The chart's labelled baseline: the task's reference, or else the first run of the sweep."""
    key, label = BASELINES.get(metric, (None, None))
    if key in table and pd.notna(table[key].iloc[0]):
        value = float(table[key].iloc[0])
        return value, f"baseline: {label} ({value:.4f})"
    value = float(table[metric].iloc[0])
    return value, f"baseline: the first run, {labels[0]} ({value:.4f})"


def _bar_chart(table: pd.DataFrame, summaries: list[dict], path: Path) -> dict:
    """One dot per run on an axis fitted to the values, each labelled with its value and its
    difference from the baseline (a dashed line, labelled); returns what it drew."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summaries[0]["main_metric"]
    labels = [f"{r.loss} · {r.framework}" + (f" ({r.backend.split(' / ')[-1]})" if r.framework == "keras"
                                              else "") for r in table.itertuples()]
    if len(set(labels)) < len(labels):  # e.g. a sweep over seeds: tell the runs apart
        labels = [f"{label} [run {r.run}]" for label, r in zip(labels, table.itertuples(), strict=True)]
    values = table[metric].astype(float).to_numpy()
    base, base_label = baseline(table, metric, labels)
    # the axis spans the runs (their differences are what the chart is for); the baseline is drawn
    # when it falls near them, and otherwise named in a note with how far the runs are from it
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.3, abs(hi) * 0.002, 1e-4)
    if lo - 3 * pad <= base <= hi + pad:
        lo, hi = min(lo, base), max(hi, base)
    on_axis = lo <= base <= hi
    n = len(table)
    fig, ax = plt.subplots(figsize=(8.0, 1.3 + 0.45 * n))
    rows = np.arange(n)[::-1]  # the first run on top
    ax.hlines(rows, lo - pad, values, color="0.85", lw=1, zorder=1)
    ax.scatter(values, rows, s=40, color="#1f77b4", zorder=3)
    if on_axis:
        ax.axvline(base, color="k", ls="--", lw=1, label=base_label, zorder=2)
    else:
        diffs = values - base
        ax.plot([], [], color="k", ls="--", lw=1,
                label=f"{base_label}, off the axis: runs {diffs.min():+.4f} to {diffs.max():+.4f}")
    for y, v in zip(rows, values, strict=True):
        ax.annotate(f"{v:.4f} ({v - base:+.4f})", (v, y), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.set_yticks(rows, labels, fontsize=9)
    ax.set_xlim(lo - pad, hi + pad + 0.3 * (hi - lo + 2 * pad))  # room for the value labels
    ax.set_ylim(-0.7, n - 0.3)
    ax.set(xlabel=f"held-out {metric} (axis fitted to the values)",
           title=f"{summaries[0]['task']}: {metric} per run")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", color="0.92")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"metric": metric, "labels": labels, "values": values.tolist(), "baseline": base,
            "baseline_label": base_label, "baseline_on_axis": on_axis,
            "xlim": [float(x) for x in ax.get_xlim()]}


class ComparisonCallback(Callback):
    """Hydra callback: after a multirun, compare the runs' summaries in the sweep directory."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = comparison(sweep_dir)
        if table is not None:
            print(f"[recipes] compared {len(table)} runs: {sweep_dir / 'comparison.md'}, "
                  f"{sweep_dir / 'comparison.csv'}, {sweep_dir / 'comparison.png'}")
