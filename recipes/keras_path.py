"""The Keras path: ``model.compile(loss=<lossplug.keras loss>)`` and ``fit`` with Keras callbacks.

Works on every Keras backend (``KERAS_BACKEND=tensorflow|jax|torch``). Per-epoch validation
metrics are the NumPy computations of :func:`recipes.tasks.metrics` on the held-out split, added to
the epoch logs by :class:`HeldOutMetrics` before Keras's ``CSVLogger`` writes them, so both
frameworks report the same definitions.

Resume is exact: ``fit`` reads the training data from :class:`EpochShuffledData`, whose order for
epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e])`` (the Lightning path's sampler
rule), and :class:`SetDataEpoch` tells it the epoch Keras is starting. A run that
``BackupAndRestore`` resumes at epoch ``k`` (weights and optimizer state restored, the model built
from the same seed) therefore sees the same batches from epoch ``k`` on as an uninterrupted run.
The recipe models draw no random numbers while training (no dropout, no augmentation).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.data import Split
from recipes.models import builder_kwargs
from recipes.tasks import metrics

PRECISION_POLICIES = {"32-true": "float32", "32": "float32", "bf16-mixed": "mixed_bfloat16",
                      "16-mixed": "mixed_float16"}


class EpochShuffledData(keras.utils.PyDataset):
    """``(x, y)`` in batches of ``batch_size``, shuffled per epoch with ``default_rng([seed, epoch])``.

    The order depends only on ``seed`` and :attr:`epoch` (set by :class:`SetDataEpoch`), not on
    any global random state, so a resumed process reproduces the uninterrupted run's batches.
    The last batch is the remainder (as ``fit`` on arrays does).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y, self.batch_size, self.seed = x, y, int(batch_size), int(seed)
        self.epoch = 0
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch``, in the order they are served."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.x)))
        return self._order[1]

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        rows = self.order(self.epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[rows], self.y[rows]


class SetDataEpoch(keras.callbacks.Callback):
    """Sets :attr:`EpochShuffledData.epoch` to the epoch ``fit`` is starting (also after a restore)."""

    def __init__(self, data: EpochShuffledData):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = int(epoch)


class HeldOutMetrics(keras.callbacks.Callback):
    """Adds ``val_<metric>`` for the task's metrics to each epoch's logs (list it before CSVLogger)."""

    def __init__(self, kind: str, split: Split, batch_size: int):
        super().__init__()
        self.kind, self.split, self.batch_size = kind, split, batch_size

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model.predict(self.split.x_test, batch_size=self.batch_size, verbose=0)
        for name, value in metrics(self.kind, self.split, outputs).items():
            if logs is not None:
                logs[f"val_{name}"] = value


def device() -> str:
    """The device Keras computes on, as its backend names it."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return "unknown"


def learning_rate(optimizer_cfg: DictConfig):
    """``optimizer.lr``, or with ``optimizer.warmup_steps`` > 1 a linear warmup to it: update ``t``
    (from 0) uses ``lr * min(1, (t + 1) / warmup_steps)``, then ``lr`` — the Lightning path's
    ``LinearLR(start_factor=1 / warmup_steps, total_iters=warmup_steps - 1)``. Keras's
    ``CosineDecay`` warms up linearly from ``initial_learning_rate`` to ``warmup_target``; with
    ``alpha=1`` its decay part stays at ``warmup_target``."""
    lr, warmup = float(optimizer_cfg.lr), int(optimizer_cfg.get("warmup_steps") or 0)
    if warmup <= 1:
        return lr
    return keras.optimizers.schedules.CosineDecay(initial_learning_rate=lr / warmup, decay_steps=1, alpha=1.0,
                                                  warmup_target=lr, warmup_steps=warmup - 1)


def fit(cfg: DictConfig, split: Split, y_train: np.ndarray, y_test: np.ndarray, out_dir: Path) -> dict:
    """Train with ``model.fit``; returns the test outputs and run facts."""
    precision = str(cfg.trainer.precision)
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"trainer.precision={precision!r} has no Keras policy; use one of "
                         f"{', '.join(PRECISION_POLICIES)}")
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[precision])
    keras.utils.set_random_seed(int(cfg.seed))
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(int(cfg.threads))
    model = instantiate(cfg.model, framework="keras", in_shape=split.in_shape, n_outputs=split.n_outputs,
                        **builder_kwargs(cfg.model, split.y_train, split.n_outputs))
    loss = instantiate(cfg.loss, framework="keras")
    # a CombinedLoss (loss=dice_ce, ...) logs each term as <term>_loss and val_<term>_loss
    term_metrics = loss.term_metrics() if hasattr(loss, "term_metrics") else None
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate(cfg.optimizer),
                                                   weight_decay=float(cfg.optimizer.weight_decay)),
                  loss=loss, metrics=term_metrics)
    (out_dir / "keras").mkdir(exist_ok=True)
    (out_dir / "checkpoints").mkdir(exist_ok=True)
    train_data = EpochShuffledData(split.x_train, y_train, int(cfg.batch_size), int(cfg.seed))
    callbacks = [SetDataEpoch(train_data), HeldOutMetrics(cfg.task.kind, split, int(cfg.eval_batch_size))]
    callbacks += [instantiate(c.keras) for c in cfg.logger.values() if c.get("keras")]
    callbacks += [instantiate(c) for c in (cfg.callbacks.get("keras") or {}).values() if c]
    # BackupAndRestore (in the callbacks config) restores weights, optimizer and epoch on a rerun.
    history = model.fit(train_data, epochs=int(cfg.trainer.max_epochs),
                        validation_data=(split.x_test, y_test), shuffle=False, callbacks=callbacks,
                        verbose=1 if cfg.trainer.enable_progress_bar else 2)
    outputs = model.predict(split.x_test, batch_size=int(cfg.eval_batch_size), verbose=0)
    csv = next((c for c in callbacks if isinstance(c, keras.callbacks.CSVLogger)), None)
    return {"outputs": np.asarray(outputs, dtype=np.float32), "is_global_zero": True, "device": device(),
            "backend": f"keras {keras.__version__} / {keras.backend.backend()}", "precision": precision,
            "epochs": history.epoch[-1] + 1 if history.epoch else 0,
            "csv": [] if csv is None else [csv.filename]}
