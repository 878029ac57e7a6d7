"""Composing ``configs/train.yaml`` for the recipe tests, and the task × loss table they share."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(ROOT / "configs")

# (task, loss) for every loss each task trains with; together they cover all nine losses.
TASK_LOSSES = [
    ("regression", "mse"), ("regression", "mae"), ("regression", "huber"), ("regression", "log_cosh"),
    ("regression", "poisson"),
    ("binary", "bce"), ("binary", "weighted_bce"), ("binary", "focal"), ("binary", "hinge"),
    ("multiclass", "sparse_categorical_ce"), ("multiclass", "categorical_ce"),
    ("multiclass", "categorical_focal"), ("multiclass", "cosine_similarity"),
    ("distillation", "kl_div"), ("distillation", "categorical_ce"),
    ("segmentation", "dice"), ("segmentation", "dice_bce"),
    ("segmentation_multiclass", "dice"), ("segmentation_multiclass", "dice_ce"),
    ("segmentation_multiclass", "dice_focal"),
    *[(task, loss) for task in ("segmentation", "segmentation_multiclass")
      for loss in ("tversky", "jaccard", "generalized_dice", "lovasz")],
]
TASKS = sorted({task for task, _ in TASK_LOSSES})


def compose(overrides=(), output_dir=None):
    """Compose ``configs/train.yaml`` with Hydra's compose API (no run directory is made)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    overrides = list(overrides)
    if output_dir is not None:
        overrides.append(f"paths.output_dir={output_dir}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)
