"""A Keras run resumed by BackupAndRestore after its first epoch ends as an uninterrupted run does."""

from __future__ import annotations

import pandas as pd
import pytest
from recipe_configs import compose

pytestmark = [pytest.mark.keras, pytest.mark.slow]

BASE = ["task=multiclass", "framework=keras", "debug=fast", "data.max_samples=96"]


def test_resume_after_first_epoch_matches_uninterrupted_run(tmp_path):
    from recipes.train import run

    straight = run(compose(BASE + ["trainer.max_epochs=3"], output_dir=tmp_path / "straight"))
    # The interruption: one epoch, backup kept (as it is when a run is killed mid-way); then the
    # same command in the same directory with the full epoch count.
    run(compose(BASE + ["trainer.max_epochs=1", "callbacks.keras.backup.delete_checkpoint=false"],
                output_dir=tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "backup").exists()
    resumed = run(compose(BASE + ["trainer.max_epochs=3"], output_dir=tmp_path / "resumed"))
    assert resumed["epochs"] == straight["epochs"] == 3
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    a = pd.read_csv(tmp_path / "straight" / "keras" / "metrics.csv")
    b = pd.read_csv(tmp_path / "resumed" / "keras" / "metrics.csv")
    assert list(a["epoch"]) == list(b["epoch"]) == [0, 1, 2]  # epoch 0 from the first process
    for column in ["loss", "val_loss", "val_accuracy"]:
        assert b[column].to_numpy() == pytest.approx(a[column].to_numpy(), rel=1e-6, abs=1e-7), column
    # The epochs after the resume trained on different weights than epoch 0 did: the check is not
    # vacuous (the loss moved).
    assert a["loss"].iloc[2] != pytest.approx(a["loss"].iloc[0], rel=1e-3)


def test_training_order_is_drawn_per_epoch_from_the_seed():
    import numpy as np

    from recipes.keras_path import EpochShuffledData

    x, y = np.arange(10.0)[:, None], np.arange(10)
    data = EpochShuffledData(x, y, batch_size=4, seed=3)
    assert len(data) == 3
    served = {}
    for epoch in (1, 0, 1):  # the order of epoch 1 does not depend on what was served before
        data.epoch = epoch
        batches = [data[i][1] for i in range(len(data))]
        assert [len(b) for b in batches] == [4, 4, 2]
        served.setdefault(epoch, []).append(np.concatenate(batches))
    assert sorted(served[0][0]) == list(range(10))
    np.testing.assert_array_equal(served[1][0], served[1][1])
    np.testing.assert_array_equal(served[1][0], np.random.default_rng([3, 1]).permutation(10))
    assert not np.array_equal(served[0][0], served[1][0])
    with pytest.raises(IndexError):
        data[3]
