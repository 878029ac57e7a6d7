"""The recipes' entry point: ``python -m recipes.train task=<task> loss=<loss> framework=torch|keras``.

Composes ``configs/train.yaml``, trains with Lightning (``framework=torch``) or Keras
(``framework=keras``, backend from ``KERAS_BACKEND``), and leaves ``metrics.csv``, ``curves.png``
and ``summary.json`` in Hydra's run directory. ``-m`` sweeps also write a comparison table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recipes import report
from recipes.tasks import loss_targets, metrics

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def loss_name(cfg: DictConfig) -> str:
    """The ``loss=`` choice: the registry name, or a combined preset's name (``dice_ce``)."""
    return cfg.loss.get("preset") or cfg.loss.name


def run(cfg: DictConfig) -> dict | None:
    """Train one recipe; returns the summary (``None`` on non-zero ranks of a distributed run)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = list(cfg.task.get("losses") or [])
    if losses and loss_name(cfg) not in losses:
        raise ValueError(f"task {cfg.task.name!r} trains with one of {losses}, not loss={loss_name(cfg)!r}")
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = instantiate(cfg.data)
    y_train, y_test = loss_targets(split, cfg.task.target)

    if cfg.framework == "torch":
        from recipes.lightning_path import fit
    elif cfg.framework == "keras":
        from recipes.keras_path import fit
    else:
        raise ValueError(f"framework must be torch or keras, not {cfg.framework!r}")
    result = fit(cfg, split, y_train, y_test, out_dir)
    if not result["is_global_zero"]:
        return None

    final = metrics(cfg.task.kind, split, result["outputs"])
    summary = {
        "task": cfg.task.name, "loss": loss_name(cfg), "framework": cfg.framework,
        "backend": result["backend"], "device": result["device"], "precision": result["precision"],
        "epochs": result["epochs"], "seed": int(cfg.seed), "main_metric": cfg.task.main_metric,
        "metrics": final, "reference": split.info, "n_train": len(split.x_train),
        "n_test": len(split.x_test), "wall_time_s": time.perf_counter() - start,
        "cpu_time_s": time.process_time() - cpu_start,
        "run": out_dir.name, "output_dir": str(out_dir),
        "loss_config": OmegaConf.to_container(cfg.loss, resolve=True),
    }
    report.write_run(out_dir, summary, result["csv"], split=split, outputs=result["outputs"],
                     kind=cfg.task.kind)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in final.items())
    print(f"[recipes] {cfg.task.name} · {loss_name(cfg)} · {cfg.framework} ({result['backend']}, "
          f"{result['device']}): {shown}  [{summary['wall_time_s']:.1f} s]")
    print(f"[recipes] results: {out_dir / 'summary.json'}")
    if "metrics" in summary.get("files", {}):
        print(f"[recipes] per-epoch metrics: {summary['files']['metrics']}")
        print(f"[recipes] training curves:   {summary['files']['curves']}")
    if "predictions" in summary.get("files", {}):
        print(f"[recipes] predicted masks:   {summary['files']['predictions']}")
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Idle OpenMP threads sleep instead of spinning: with threads=2 on a busy 2-core machine the
    # spinning halved the speed (must be set before torch is imported).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    summary = run(cfg)
    # The returned value is what a Hydra sweeper (e.g. Optuna) would optimise.
    return None if summary is None else summary["metrics"][cfg.task.main_metric]


if __name__ == "__main__":
    main()
