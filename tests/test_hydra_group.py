"""The shipped Hydra group ``loss``: every YAML composes and builds the registry's loss.

The app config lives in a temporary directory and names only ``defaults: [loss: ...]``; the
group itself comes from the installed package through the ``hydra_plugins`` search-path plugin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hydra")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import lossplug  # noqa: E402
from lossplug._spec import REGISTRY  # noqa: E402
from lossplug.conf import generate  # noqa: E402

NAMES = list(REGISTRY)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app_conf")
    (path / "config.yaml").write_text("defaults:\n  - loss: dice\n  - _self_\n\nseed: 0\n")
    return path


@pytest.fixture(scope="module")
def compose_app(config_dir):
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides))


def _loss_keys(cfg) -> list[str]:
    return [k for k in cfg.loss if k not in ("_target_", "name", "framework")]


# --- the files and the registry -----------------------------------------------------------------


def test_group_holds_one_yaml_per_registry_name():
    from lossplug._presets import PRESETS  # and one per combined-loss preset (dice_ce, ...)

    files = sorted(p.stem for p in generate.LOSS_DIR.glob("*.yaml"))
    assert files == sorted(lossplug.available() + list(PRESETS))


@pytest.mark.parametrize("name", NAMES)
def test_yaml_is_the_generated_text(name):
    # `python -m lossplug.conf.generate` rewrites the files; a registry change without it fails here
    assert (generate.LOSS_DIR / f"{name}.yaml").read_text() == generate.render(REGISTRY[name])


def test_generator_check_mode_reports_no_stale_file():
    assert generate.main(["--check"]) == 0


def test_plugin_and_generator_agree_on_the_open_node_name():
    from hydra_plugins.lossplug_searchpath.lossplug_searchpath import OPEN_NODE

    assert OPEN_NODE == generate.OPEN_NODE


# --- composing each loss ------------------------------------------------------------------------


def test_default_from_user_defaults_list(compose_app):
    cfg = compose_app()
    assert cfg.loss.name == "dice" and cfg.loss._target_ == "lossplug.get"
    assert cfg.seed == 0


@pytest.mark.parametrize("name", NAMES)
def test_yaml_keys_and_values_are_the_registry_defaults(compose_app, name):
    cfg = compose_app(f"loss={name}")
    assert cfg.loss.name == name
    assert "defaults" not in cfg.loss
    defaults = REGISTRY[name].defaults
    assert _loss_keys(cfg) == list(defaults)  # same names, same order
    values = OmegaConf.to_container(cfg.loss)
    for key, default in defaults.items():
        assert values[key] == default and type(values[key]) is type(default), key


@pytest.mark.parametrize("name", NAMES)
def test_instantiate_torch_has_registry_defaults(compose_app, name):
    torch = pytest.importorskip("torch")
    loss = instantiate(compose_app(f"loss={name}").loss, framework="torch")
    assert isinstance(loss, torch.nn.Module)
    assert type(loss).__name__ == REGISTRY[name].class_name
    assert loss.params() == REGISTRY[name].defaults


@pytest.mark.parametrize("name", NAMES)
def test_instantiate_numpy_has_registry_defaults(compose_app, name):
    fn = instantiate(compose_app(f"loss={name}").loss, framework="numpy")
    assert fn.func is getattr(lossplug.numpy, name)
    assert fn.keywords == REGISTRY[name].defaults


# --- overrides ----------------------------------------------------------------------------------


def test_override_huber_delta_matches_torch(compose_app):
    torch = pytest.importorskip("torch")
    loss = instantiate(compose_app("loss=huber", "loss.delta=0.25").loss, framework="torch")
    assert loss.delta == 0.25
    x = torch.tensor([0.0, 0.1, 0.7, -2.0])
    y = torch.zeros(4)
    expected = torch.nn.HuberLoss(delta=0.25)(x, y)
    torch.testing.assert_close(loss(x, y), expected)


def test_override_kl_from_logits_matches_torch(compose_app):
    torch = pytest.importorskip("torch")
    loss = instantiate(compose_app("loss=kl_div", "loss.from_logits=true").loss, framework="torch")
    assert loss.from_logits is True
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -0.2]], dtype=torch.float64)
    p = torch.tensor([[0.7, 0.1, 0.2], [0.2, 0.5, 0.3]], dtype=torch.float64)
    expected = torch.nn.functional.kl_div(logits.log_softmax(1), p, reduction="batchmean")
    torch.testing.assert_close(loss(logits, p), expected)


def test_override_dice_smooth_and_class_weights_by_hand(compose_app):
    cfg = compose_app("loss.smooth=0.5", "loss.per_class=true", "loss.class_weights=[1,3]")
    fn = instantiate(cfg.loss, framework="numpy")
    # one sample, classes along the last axis (NumPy's habit), two positions
    y_pred = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    y_true = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    # class 0: I = 1, D = 1.25 + 1 -> 1 - 2.5/2.75; class 1: I = 0.5, D = 0.25 + 1 -> 1 - 1.5/1.75
    dice0, dice1 = 1 - 2.5 / 2.75, 1 - 1.5 / 1.75
    assert fn(y_pred, y_true) == pytest.approx((dice0 + 3 * dice1) / 4, rel=1e-12)


def test_addition_with_plus_reaches_the_registry_check(compose_app):
    cfg = compose_app("loss=huber", "+loss.delt=0.5")
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.loss, framework="numpy")
    assert isinstance(info.value.__cause__, lossplug.LossParameterError)


# --- errors -------------------------------------------------------------------------------------


def test_unknown_loss_lists_the_valid_ones(compose_app):
    with pytest.raises(MissingConfigException) as info:
        compose_app("loss=hubr")
    message = str(info.value)
    assert "loss/hubr" in message
    for name in NAMES:
        assert f"\t{name}\n" in message + "\n"


def test_misspelt_parameter_names_the_loss_and_its_parameters(compose_app):
    cfg = compose_app("loss=huber", "loss.delt=0.5")  # no '+': the loss node accepts the key...
    with pytest.raises(InstantiationException) as info:  # ...and lossplug rejects it
        instantiate(cfg.loss, framework="torch")
    cause = info.value.__cause__
    assert isinstance(cause, lossplug.LossParameterError)
    assert str(cause) == (
        "HuberLoss ('huber') got unknown parameter(s) delt; its parameters are: delta, reduction"
    )
    assert "HuberLoss" in str(info.value) and "delta, reduction" in str(info.value)


def test_bad_value_is_rejected_by_the_registry(compose_app):
    cfg = compose_app("loss=dice", "loss.aggregation=global")
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.loss, framework="numpy")
    assert "aggregation='global' is invalid; it must be one of 'sample', 'batch'" in str(info.value)


def test_rest_of_the_config_stays_in_struct_mode(compose_app):
    with pytest.raises(ConfigCompositionException, match="Could not override 'sed'"):
        compose_app("sed=1")
    cfg = compose_app()
    assert OmegaConf.is_struct(cfg) and not OmegaConf.is_struct(cfg.loss)


def test_composing_imports_no_framework(config_dir):
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        f"with initialize_config_dir(config_dir={str(config_dir)!r}, version_base=None):\n"
        "    cfg = compose(config_name='config', overrides=['loss=kl_div'])\n"
        "assert cfg.loss.name == 'kl_div'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'keras', 'jax')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
