"""Every recipe config composes, and the choices land where the recipes read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_configs import CONFIG_DIR, TASK_LOSSES, TASKS, compose

import lossplug
from recipes.train import loss_name

GROUPS = {group: sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
          for group in ("data", "model", "trainer", "logger", "callbacks", "experiment", "debug", "task")}


NOT_IN_A_RECIPE: dict[str, str] = {}  # loss -> why no task trains with it (every loss has one now)


def test_task_losses_cover_every_registry_loss():
    trained = {loss for _, loss in TASK_LOSSES} | {"bce", "sparse_categorical_ce"}
    assert set(lossplug.available()) - set(NOT_IN_A_RECIPE) <= trained
    assert not set(NOT_IN_A_RECIPE) & trained  # the list stays true
    for task in TASKS:
        cfg = compose([f"task={task}"])
        assert {loss for t, loss in TASK_LOSSES if t == task} == set(cfg.task.losses)


@pytest.mark.parametrize("task,loss", TASK_LOSSES)
def test_task_and_loss_compose(task, loss, tmp_path):
    cfg = compose([f"task={task}", f"loss={loss}"], output_dir=tmp_path)
    assert cfg.task.name == task and loss_name(cfg) == loss
    assert loss_name(cfg) in cfg.task.losses
    # The model outputs logits in every classification and segmentation task.
    if task != "regression":
        terms = cfg.loss.terms.values() if "terms" in cfg.loss else [cfg.loss]
        assert all(term.from_logits for term in terms if "from_logits" in term)  # hinge: raw scores
    assert str(cfg.paths.output_dir) == str(tmp_path)


def test_command_line_beats_task_specialisation():
    cfg = compose(["task=binary", "loss=weighted_bce"])
    assert cfg.loss.pos_weight == 10.0
    cfg = compose(["task=binary", "loss=weighted_bce", "loss.pos_weight=3"])
    assert cfg.loss.pos_weight == 3
    assert compose(["task=multiclass", "loss=categorical_ce"]).task.target == "onehot"
    assert compose(["task=multiclass"]).task.target == "value"
    multi = compose(["task=segmentation_multiclass"]).loss
    assert (multi.per_class, multi.include_background, multi.aggregation) == (True, False, "batch")
    assert compose(["task=segmentation"]).loss.per_class is False  # binary Dice keeps the defaults
    poisson = compose(["task=regression", "loss=poisson"])  # counts, log-rates, the metrics of counts
    assert (poisson.data.target, poisson.task.kind, poisson.task.main_metric) == ("counts", "counts", "d2")
    assert poisson.loss.log_input is True
    assert compose(["task=regression", "loss=mse"]).data.target == "standardised"
    gdice = compose(["task=segmentation_multiclass", "loss=generalized_dice"])  # its own setting
    assert (gdice.loss.aggregation, gdice.loss.weight_type, gdice.loss.include_background) == (
        "batch", "square", True)
    assert (gdice.batch_size, gdice.optimizer.weight_decay, gdice.trainer.max_epochs) == (64, 0.0, 60)
    assert gdice.model.norm == "batch"
    other = compose(["task=segmentation_multiclass", "loss=dice"])
    assert (other.batch_size, other.optimizer.weight_decay, other.trainer.max_epochs) == (16, 0.0, 16)
    assert other.model.norm is None


def test_combined_loss_composes_shipped_terms():
    cfg = compose(["task=segmentation_multiclass", "loss=dice_ce", "loss.terms.dice.smooth=0.5"])
    assert cfg.loss.terms.dice.name == "dice" and cfg.loss.terms.dice.smooth == 0.5
    assert cfg.loss.terms.ce.name == "sparse_categorical_ce"
    assert cfg.loss.terms.ce.label_smoothing == 0.0  # shipped defaults came along
    assert cfg.loss._recursive_ is False


def test_every_group_option_composes():
    # One composition per row; row i takes option i (cyclically) of every group, so every option of
    # every group is composed at least once without one composition per option (each takes ~0.5 s).
    # An experiment picks its own task and loss, so experiments are composed on their own.
    assert all(GROUPS.values()), GROUPS
    groups = {group: options for group, options in GROUPS.items() if group != "experiment"}
    rows = [{group: options[i % len(options)] for group, options in groups.items()}
            for i in range(max(len(options) for options in groups.values()))]
    rows += [{"experiment": option} for option in GROUPS["experiment"]]
    for row in rows:
        cfg = compose([f"{group}={option}" for group, option in row.items()])
        assert cfg.trainer.max_epochs >= 1
        assert loss_name(cfg) in cfg.task.losses


def test_trainer_presets():
    assert compose([]).trainer.accelerator == "auto"
    sim = compose(["trainer=ddp_sim"]).trainer
    assert (sim.accelerator, sim.devices, sim.strategy.process_group_backend) == ("cpu", 2, "gloo")
    assert sim.strategy._target_.endswith("DDPStrategy")
    ddp = compose(["trainer=ddp"]).trainer
    assert (ddp.accelerator, ddp.strategy) == ("gpu", "ddp")
    assert compose(["trainer=gpu"]).trainer.accelerator == "gpu"


def test_debug_preset_is_small():
    cfg = compose(["debug=fast", "task=segmentation"])
    assert cfg.trainer.max_epochs == 2 and cfg.data.max_samples == 64


def test_logger_options():
    assert set(compose([]).logger) == {"csv"}
    assert set(compose(["logger=tensorboard"]).logger) == {"csv", "tensorboard"}


def test_cpu_trainers_instantiate(tmp_path):
    from hydra.utils import instantiate

    for preset in ("default", "cpu", "ddp_sim"):
        trainer = instantiate(compose([f"trainer={preset}"], output_dir=tmp_path).trainer, logger=False)
        assert trainer.max_epochs == 100


def test_incompatible_loss_is_rejected(tmp_path):
    from recipes.train import run

    with pytest.raises(ValueError, match="trains with one of"):
        run(compose(["task=regression", "loss=dice"], output_dir=tmp_path))
