"""The Lightning path: one small LightningModule for every task, torchmetrics for the curves.

The loss is an ``nn.Module`` attribute of the module (so ``.to(device)`` moves its buffers);
``save_hyperparameters`` records the loss *config*, not the module, so ``hparams.yaml`` and the
checkpoints say which loss and parameters trained the model.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchmetrics
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Sampler, TensorDataset

from recipes.data import Split
from recipes.models import builder_kwargs
from recipes.tasks import from_torch_layout, to_torch_layout


class EpochSeededSampler(Sampler[int]):
    """Shuffles with ``seed + epoch``: a run resumed from a checkpoint sees the same batches.

    Lightning calls ``set_epoch`` before every epoch (also after resuming), so the order does
    not depend on how much global random state was consumed before.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class PoissonD2(torchmetrics.Metric):
    """D² for counts: 1 - the Poisson deviance of the rates / that of the mean count (scikit-learn's
    ``d2_tweedie_score(power=1)``), from sums (the null deviance is 2 Σ y log(y / ȳ))."""

    def __init__(self):
        super().__init__()
        for name in ("deviance", "ylogy", "total", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rate: torch.Tensor, y: torch.Tensor) -> None:
        rate, y = rate.double(), y.double()
        ylogy = torch.where(y > 0, y * torch.log(torch.where(y > 0, y, 1.0)), 0.0)
        self.deviance += (2.0 * (ylogy - y * torch.log(rate) - (y - rate))).sum()
        self.ylogy += ylogy.sum()
        self.total += y.sum()
        self.count += y.numel()

    def compute(self) -> torch.Tensor:
        null = 2.0 * (self.ylogy - self.total * torch.log(self.total / self.count))
        return 1.0 - self.deviance / null


def val_metrics(kind: str, n_outputs: int) -> dict[str, torchmetrics.Metric]:
    """The torchmetrics logged as ``val_<name>`` each epoch: every name of :func:`recipes.tasks.metrics`,
    so the Lightning and Keras curves show the same series.

    Segmentation Dice is the F1 score over pixels (the same number as Dice over the whole set);
    the multiclass one is the mean over the foreground classes, each also logged as
    ``val_dice_<class>``; ``pixel_accuracy`` is the accuracy over pixels.
    """
    tm = torchmetrics
    if kind == "regression":
        return {"r2": tm.R2Score(), "mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError()}
    if kind == "counts":  # on the rates, exp of the model's log-rates
        return {"d2": PoissonD2(), "poisson_deviance": tm.TweedieDevianceScore(power=1.0),
                "mae": tm.MeanAbsoluteError(), "r2": tm.R2Score()}
    if kind == "binary":
        c = tm.classification
        return {"accuracy": c.BinaryAccuracy(), "recall": c.BinaryRecall(),
                "precision": c.BinaryPrecision(), "f1": c.BinaryF1Score()}
    if kind == "multiclass":
        return {"accuracy": tm.classification.MulticlassAccuracy(n_outputs, average="micro")}
    if kind == "distillation":
        return {"accuracy": tm.classification.MulticlassAccuracy(n_outputs, average="micro"),
                "teacher_agreement": tm.classification.MulticlassAccuracy(n_outputs, average="micro")}
    if kind == "segmentation" and n_outputs == 1:
        return {"dice": tm.classification.BinaryF1Score(),
                "pixel_accuracy": tm.classification.BinaryAccuracy()}
    if kind == "segmentation":
        return {"dice": tm.classification.MulticlassF1Score(n_outputs, average=None),
                "pixel_accuracy": tm.classification.MulticlassAccuracy(n_outputs, average="micro")}
    raise ValueError(f"unknown task kind {kind!r}")


class LossplugModule(L.LightningModule):
    """``net`` trained with ``loss``; validation logs ``val_loss`` and the task's torchmetrics."""

    def __init__(self, net: torch.nn.Module, loss: torch.nn.Module, *, loss_config: dict, kind: str,
                 n_outputs: int, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0,
                 class_names: list | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss"])
        self.net, self.loss = net, loss
        self.metrics = torch.nn.ModuleDict(val_metrics(kind, n_outputs))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x),
                 sync_dist=True)
        self._log_terms("train", len(x))
        return loss

    def _log_terms(self, stage: str, batch_size: int):
        # a CombinedLoss (loss=dice_ce, ...) keeps each term's value of the last call
        terms = getattr(self.loss, "term_values", None)
        if terms:
            self.log_dict({f"{stage}_{k}_loss": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                          batch_size=batch_size, sync_dist=True)

    def validation_step(self, batch, batch_idx):
        # y: the loss target; labels: the data's own targets (class labels, values, masks).
        x, y, labels = batch
        out = self(x)
        self.log("val_loss", self.loss(out, y), on_epoch=True, prog_bar=True, batch_size=len(x),
                 sync_dist=True)
        self._log_terms("val", len(x))
        preds, target = self._metric_inputs(out, labels)
        for name, metric in self.metrics.items():
            metric.update(preds, y.argmax(1) if name == "teacher_agreement" else target)

    def on_validation_epoch_end(self):
        for name, metric in self.metrics.items():
            value = metric.compute()
            if value.ndim:  # per-class Dice: each foreground class, and their mean
                names = self.hparams.class_names or [str(c) for c in range(len(value))]
                for c in range(1, len(value)):
                    self.log(f"val_{name}_{names[c]}", value[c], sync_dist=True)
                value = value[1:].mean()
            # compute() already gathers every process's state; sync_dist averages equal values.
            self.log(f"val_{name}", value, prog_bar=name == next(iter(self.metrics)), sync_dist=True)
            metric.reset()

    def _metric_inputs(self, out, y):
        kind = self.hparams.kind
        if kind == "regression":
            return out.reshape(-1), y.reshape(-1)
        if kind == "counts":
            return torch.exp(out.reshape(-1)), y.reshape(-1)
        if kind == "binary" or (kind == "segmentation" and self.hparams.n_outputs == 1):
            return torch.sigmoid(out).reshape(-1), (y > 0.5).long().reshape(-1)
        if kind == "segmentation":
            return out.argmax(1).reshape(-1), y.reshape(-1)
        return out.argmax(1), y

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        warmup = int(self.hparams.warmup_steps)
        if warmup <= 1:
            return optimizer
        # Linear warmup, stepped per batch: update t (from 0) uses lr * min(1, (t + 1) / warmup),
        # then lr; the Keras path's schedule is the same (keras_path.learning_rate).
        scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                                      total_iters=warmup - 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_torch_layout(array)))


def _keep_earlier_csv(csv_logger) -> list[str]:
    """Lightning's CSVLogger rewrites ``metrics.csv`` when a run resumes in the same directory: move the
    epochs logged before the interruption aside (``metrics.part<k>.csv``) so the report keeps them."""
    if csv_logger is None:
        return []
    log_dir = Path(csv_logger.log_dir)
    parts = sorted(log_dir.glob("metrics.part*.csv"))
    current = log_dir / "metrics.csv"
    if current.exists():
        parts.append(current.rename(log_dir / f"metrics.part{len(parts)}.csv"))
    return [str(p) for p in parts]


def fit(cfg: DictConfig, split: Split, y_train: np.ndarray, y_test: np.ndarray, out_dir: Path) -> dict:
    """Train with Lightning; returns the test outputs (channels-last) and run facts."""
    torch.set_num_threads(int(cfg.threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    net = instantiate(cfg.model, framework="torch", in_shape=split.in_shape, n_outputs=split.n_outputs,
                      **builder_kwargs(cfg.model, split.y_train, split.n_outputs))
    loss = instantiate(cfg.loss, framework="torch")
    module = LossplugModule(net, loss, loss_config=OmegaConf.to_container(cfg.loss, resolve=True),
                            kind=cfg.task.kind, n_outputs=split.n_outputs, lr=float(cfg.optimizer.lr),
                            weight_decay=float(cfg.optimizer.weight_decay),
                            warmup_steps=int(cfg.optimizer.get("warmup_steps") or 0),
                            class_names=split.info.get("classes"))
    x_train, x_test = _tensor(split.x_train), _tensor(split.x_test)
    train = DataLoader(TensorDataset(x_train, _tensor(y_train)), batch_size=int(cfg.batch_size),
                       sampler=EpochSeededSampler(len(x_train), int(cfg.seed)))
    val = DataLoader(TensorDataset(x_test, _tensor(y_test), _tensor(split.y_test)),
                     batch_size=int(cfg.eval_batch_size))
    loggers = [instantiate(c.lightning) for c in cfg.logger.values() if c.get("lightning")]
    callbacks = [instantiate(c) for c in (cfg.callbacks.get("lightning") or {}).values() if c]
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks, _convert_="partial")
    csv_logger = next((lg for lg in loggers if isinstance(lg, L.pytorch.loggers.CSVLogger)), None)
    csv_parts = _keep_earlier_csv(csv_logger) if cfg.resume else []
    trainer.fit(module, train, val, ckpt_path="last" if cfg.resume else None)

    module.eval()
    with torch.no_grad():
        outputs = torch.cat([module(x.to(module.device)).float().cpu()
                             for x in x_test.split(int(cfg.eval_batch_size))])
    if csv_logger is not None:
        csv_parts.append(str(Path(csv_logger.log_dir) / "metrics.csv"))
    return {"outputs": from_torch_layout(outputs.numpy()), "is_global_zero": trainer.is_global_zero,
            "device": f"{trainer.strategy.root_device} x{trainer.world_size}" if trainer.world_size > 1
            else str(trainer.strategy.root_device), "backend": f"torch {torch.__version__}",
            "precision": str(trainer.precision), "epochs": trainer.current_epoch,
            "csv": csv_parts}
