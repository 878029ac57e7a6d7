"""What a run leaves behind: per-epoch ``metrics.csv``, ``curves.png``, ``summary.json``; and, for
a multirun, ``comparison.{md,csv,png}`` written by :class:`ComparisonCallback`."""

from __future__ import annotations

import json
from pathlib import Path

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
    else:  # Keras names the training loss "loss"
        table = table.rename(columns={"loss": "train_loss"})
        table = table.drop_duplicates("epoch", keep="last")
    return table.sort_values("epoch").reset_index(drop=True)


def plot_curves(table: pd.DataFrame, path: Path, title: str) -> None:
    """Loss curves (train, val) on the left, the validation metrics on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = table["epoch"] + 1
    for col in ("train_loss", "val_loss"):
        if col in table:
            ax_loss.plot(epochs, table[col], label=col)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for col in [c for c in table.columns if c.startswith("val_") and c != "val_loss"]:
        ax_metric.plot(epochs, table[col], label=col)
    ax_metric.set(xlabel="epoch", title="held-out metrics")
    if ax_metric.lines:
        ax_metric.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_run(out_dir: Path, summary: dict, csv_paths: list[str | Path]) -> dict:
    """Write ``metrics.csv`` and ``curves.png`` (when there is a CSV log) and ``summary.json``."""
    csv_paths = [p for p in csv_paths if Path(p).exists()]
    if csv_paths:
        table = epoch_table(csv_paths, summary["framework"])
        table.to_csv(out_dir / "metrics.csv", index=False)
        title = f"{summary['task']} · {summary['loss']} · {summary['framework']} ({summary['backend']})"
        plot_curves(table, out_dir / "curves.png", title)
        summary["files"] = {"metrics": str(out_dir / "metrics.csv"), "curves": str(out_dir / "curves.png")}
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


def _bar_chart(table: pd.DataFrame, summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summaries[0]["main_metric"]
    labels = [f"{r.loss}\n{r.framework}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(table)), 3.6))
    ax.bar(range(len(table)), table[metric])
    ax.set_xticks(range(len(table)), labels, fontsize=8)
    ax.set(ylabel=f"held-out {metric}", title=f"{summaries[0]['task']}: {metric} per run")
    if metric == "r2" and "linear_regression_r2" in table:
        ax.axhline(table["linear_regression_r2"].iloc[0], color="k", ls="--", lw=1,
                   label="scikit-learn LinearRegression")
        ax.legend(loc="lower right", fontsize=8)
    for i, v in enumerate(table[metric]):
        ax.annotate(f"{v:.3f}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class ComparisonCallback(Callback):
    """Hydra callback: after a multirun, compare the runs' summaries in the sweep directory."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = comparison(sweep_dir)
        if table is not None:
            print(f"[recipes] compared {len(table)} runs: {sweep_dir / 'comparison.md'}, "
                  f"{sweep_dir / 'comparison.csv'}, {sweep_dir / 'comparison.png'}")
