"""Resume from ``last.ckpt`` gives the uninterrupted result; a small multirun writes a comparison."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from recipe_configs import ROOT, compose

from recipes.train import run

BASE = ["task=multiclass", "debug=fast", "data.max_samples=128"]


@pytest.mark.slow
def test_resume_after_first_epoch_matches_uninterrupted_run(tmp_path):
    straight = run(compose(BASE + ["trainer.max_epochs=3"], output_dir=tmp_path / "straight"))
    run(compose(BASE + ["trainer.max_epochs=1"], output_dir=tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").exists()
    resumed = run(compose(BASE + ["trainer.max_epochs=3", "resume=true"], output_dir=tmp_path / "resumed"))
    assert resumed["epochs"] == straight["epochs"] == 3
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert list(b["epoch"]) == [0, 1, 2]  # the epoch before the interruption is kept
    assert b["val_loss"].iloc[0] == pytest.approx(a["val_loss"].iloc[0], rel=1e-6)
    assert b["val_loss"].iloc[-1] == pytest.approx(a["val_loss"].iloc[-1], rel=1e-6)
    assert b["train_loss"].iloc[-1] == pytest.approx(a["train_loss"].iloc[-1], rel=1e-6)


@pytest.mark.slow
def test_multirun_writes_comparison(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "recipes.train", "-m", "task=regression", "loss=mse,mae", "debug=fast",
           f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(sweep / "comparison.csv")
    assert sorted(table["loss"]) == ["mae", "mse"] and set(table["task"]) == {"regression"}
    summaries = {json.loads(p.read_text())["loss"]: json.loads(p.read_text())
                 for p in sweep.glob("*/summary.json")}
    for row in table.itertuples():
        assert row.r2 == pytest.approx(summaries[row.loss]["metrics"]["r2"], abs=1e-4)
    markdown = (sweep / "comparison.md").read_text()
    assert markdown.startswith("| run | task | loss |") and markdown.count("\n") == 4
    assert (sweep / "comparison.png").stat().st_size > 1000
    assert "comparison.md" in done.stdout
