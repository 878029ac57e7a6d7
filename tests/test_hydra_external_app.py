"""A user's Hydra app, outside the repository, against a built wheel of lossplug.

The wheel is built from a copy of the working tree and installed (``--no-deps``) into a fresh
virtual environment in a temporary directory. Installing torch, Keras and Hydra again would take
minutes, so the new environment sees the project environment's site-packages through a ``.pth``
line appended *after* its own: a ``.pth`` line only adds a directory to ``sys.path``, it does not
process the ``.pth`` files inside it, so the project's editable install (``__editable__*.pth``,
pointing at ``src/``) stays invisible and ``lossplug`` and ``hydra_plugins.lossplug_searchpath``
come only from the wheel. The app checks that by printing their ``__file__``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

APP = '''\
import json

import hydra
from omegaconf import OmegaConf


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    import hydra_plugins.lossplug_searchpath.lossplug_searchpath as plugin
    import lossplug

    # framework=null on the command line: the call of a user who leaves framework= out
    kwargs = {} if cfg.framework is None else {"framework": cfg.framework}
    try:
        loss = hydra.utils.instantiate(cfg.loss, **kwargs)
    except Exception as exc:
        cause = exc.__cause__ or exc
        print("ERROR " + json.dumps({"type": type(cause).__name__, "message": str(cause)}))
        raise
    value = None
    if cfg.probe:  # the loss on a fixed batch of logits and 0/1 targets (torch)
        import torch

        x = torch.tensor([[-2.0, 0.5], [1.5, 3.0]], dtype=torch.float64)
        y = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
        value = float(loss(x, y))
    print("RESULT " + json.dumps({
        "lossplug_file": lossplug.__file__,
        "plugin_file": plugin.__file__,
        "loss_cfg": OmegaConf.to_container(cfg.loss),
        "class": type(loss).__module__ + "." + type(loss).__name__,
        "params": {k: v for k, v in loss.params().items() if k != "class_weights"},
        "value": value,
    }))


if __name__ == "__main__":
    main()
'''

CONFIG = """\
defaults:
  - loss: dice
  - _self_

framework: torch
probe: false
hydra:
  run:
    dir: ./outputs/run
"""


# The user's own loss (docs/subclassing.md's focal BCE) in the user's own package, and the config
# that selects it by _target_ beside the shipped ones.
USER_LOSSES = '''\
import torch
from lossplug.torch import BCELoss


class FocalBCELoss(BCELoss):
    def __init__(self, *, gamma: float = 2.0, **params):
        super().__init__(**params)
        self.gamma = gamma

    def terms(self, y_pred, y_true):
        loss, weight = super().terms(y_pred, y_true)
        p_t = torch.exp(-loss)
        return (1 - p_t) ** self.gamma * loss, weight
'''

USER_LOSS_YAML = """\
_target_: my_project.losses.FocalBCELoss
gamma: 2.0
from_logits: true
"""


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HYDRA", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def _run(cmd, cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def user_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("external")
    # 1. a wheel built from a copy of the sources (keeps build/ and *.egg-info out of the checkout)
    source = tmp / "source"
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp / "dist"
    built = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
                  str(source)], cwd=tmp, env=_clean_env())
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("lossplug-*.whl")

    # 2. a fresh venv holding only the wheel; dependencies come from the project's site-packages
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, check=True)
    python = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                      "--no-index", "--quiet", str(wheel)], cwd=tmp, env=_clean_env())
    assert installed.returncode == 0, installed.stderr
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=tmp, check=True).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    (Path(site) / "zz_project_dependencies.pth").write_text(deps + "\n")

    # 3. the user's app with its own config dir, in a directory outside the repository
    app_dir = tmp / "user_app"
    (app_dir / "conf").mkdir(parents=True)
    (app_dir / "app.py").write_text(APP)
    (app_dir / "conf" / "config.yaml").write_text(CONFIG)
    (app_dir / "conf" / "loss").mkdir()
    (app_dir / "conf" / "loss" / "focal_bce.yaml").write_text(USER_LOSS_YAML)
    (app_dir / "my_project").mkdir()
    (app_dir / "my_project" / "__init__.py").write_text("")
    (app_dir / "my_project" / "losses.py").write_text(USER_LOSSES)
    assert not app_dir.is_relative_to(ROOT)

    def run(*overrides, **env):
        proc = _run([str(python), "app.py", *overrides], cwd=app_dir, env=_clean_env(**env))
        result = None
        for line in proc.stdout.splitlines():
            for tag in ("RESULT ", "ERROR "):
                if line.startswith(tag):
                    result = json.loads(line[len(tag):])
        return proc, result

    return run, Path(site), wheel


def test_wheel_holds_plugin_and_yaml_files(user_app):
    import zipfile

    _, _, wheel = user_app
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hydra_plugins/lossplug_searchpath/lossplug_searchpath.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package, shared with other plugins
    import lossplug

    for name in lossplug.available():
        assert f"lossplug/conf/loss/{name}.yaml" in names


def test_defaults_list_selects_dice_from_the_wheel(user_app):
    run, site, _ = user_app
    proc, out = run()
    assert proc.returncode == 0, proc.stderr
    assert Path(out["lossplug_file"]).is_relative_to(site)  # the wheel, not the repository's src/
    assert Path(out["plugin_file"]).is_relative_to(site)
    assert not Path(out["lossplug_file"]).is_relative_to(ROOT)
    assert out["class"] == "lossplug.torch.DiceLoss"
    assert out["params"]["smooth"] == 1e-5 and out["params"]["aggregation"] == "sample"


def test_overrides_change_the_loss_and_its_parameters(user_app):
    run, _, _ = user_app
    proc, out = run("loss=kl_div", "loss.from_logits=true")
    assert proc.returncode == 0, proc.stderr
    assert out["class"] == "lossplug.torch.KLDivLoss"
    assert out["params"]["from_logits"] is True and out["params"]["log_input"] is False

    proc, out = run("loss.smooth=0.5", "loss.aggregation=batch")
    assert proc.returncode == 0, proc.stderr
    assert out["params"]["smooth"] == 0.5 and out["params"]["aggregation"] == "batch"


def test_keras_framework_from_the_command_line(user_app):
    run, _, _ = user_app
    proc, out = run("loss=huber", "loss.delta=0.25", "framework=keras", KERAS_BACKEND="numpy")
    assert proc.returncode == 0, proc.stderr
    assert out["class"] == "lossplug.keras.HuberLoss"
    assert out["params"] == {"delta": 0.25, "reduction": "mean"}


def test_unknown_loss_lists_the_valid_names(user_app):
    run, _, _ = user_app
    proc, out = run("loss=hubr")
    assert proc.returncode != 0 and out is None
    assert "Could not find 'loss/hubr'" in proc.stderr
    import lossplug

    for name in lossplug.available():
        assert f"\t{name}\n" in proc.stderr


def test_misspelt_parameter_names_the_loss_and_its_parameters(user_app):
    run, _, _ = user_app
    proc, out = run("loss=huber", "loss.delt=0.5")
    assert proc.returncode != 0 and out["type"] == "LossParameterError"
    assert (
        "HuberLoss ('huber') got unknown parameter(s) delt; its parameters are: delta, reduction"
        in proc.stderr
    )


# --- framework: required, and the same call for the user's own subclass -------------------------


def _focal_by_hand(gamma: float) -> float:
    """Focal BCE on the app's probe batch, from the formula (NumPy, not lossplug)."""
    import numpy as np

    x = np.array([[-2.0, 0.5], [1.5, 3.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0]])
    p = 1 / (1 + np.exp(-x))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = np.where(y == 1, p, 1 - p)
    return float(np.mean((1 - p_t) ** gamma * bce))


def test_no_framework_fails_at_instantiate_naming_framework_and_its_values(user_app):
    run, _, _ = user_app
    proc, out = run("loss=huber", "framework=null")
    assert proc.returncode != 0 and out is not None, proc.stderr
    assert out["type"] == "ValueError"
    assert "framework is not set" in out["message"]
    assert "'numpy', 'torch' or 'keras'" in out["message"]


def test_framework_from_the_loss_node_on_the_command_line(user_app):
    run, _, _ = user_app
    proc, out = run("loss=mse", "framework=null", "loss.framework=torch")
    assert proc.returncode == 0, proc.stderr
    assert out["class"] == "lossplug.torch.MSELoss"


def test_user_subclass_by_target_with_the_same_call(user_app):
    run, _, _ = user_app
    proc, out = run("loss=focal_bce", "probe=true")
    assert proc.returncode == 0, proc.stderr
    assert out["class"] == "my_project.losses.FocalBCELoss"
    assert out["params"]["from_logits"] is True
    assert out["value"] == pytest.approx(_focal_by_hand(2.0), rel=1e-12)

    proc, out = run("loss=focal_bce", "loss.gamma=0.5", "probe=true")
    assert proc.returncode == 0, proc.stderr
    assert out["value"] == pytest.approx(_focal_by_hand(0.5), rel=1e-12)


def test_user_subclass_refuses_another_framework_naming_both(user_app):
    run, _, _ = user_app
    proc, out = run("loss=focal_bce", "framework=keras")
    assert proc.returncode != 0 and out is not None, proc.stderr
    assert out["type"] == "ValueError"
    assert "my_project.losses.FocalBCELoss is a torch loss" in out["message"]
    assert "framework='keras'" in out["message"]
