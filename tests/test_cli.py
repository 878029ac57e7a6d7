"""The ``lossplug`` command, run as a user runs it: the installed console script in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lossplug
from lossplug._spec import REGISTRY

LOSSPLUG = Path(sys.executable).with_name("lossplug")
NAMES = list(REGISTRY)
CLASSES = [s.class_name for s in REGISTRY.values()]


def run(*args, env=None, timeout=180):
    full_env = dict(os.environ, COLUMNS="120", **(env or {}))
    return subprocess.run(
        [str(LOSSPLUG), *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def test_console_script_is_installed():
    assert LOSSPLUG.exists(), "pip install -e . should have installed the lossplug script"


@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["check"], ["plot"]])
def test_help_everywhere(command):
    out = run(*command, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: lossplug")
    assert out.stderr == ""


def test_no_command_prints_help_and_version():
    out = run()
    assert out.returncode == 0 and "COMMAND" in out.stdout and "check" in out.stdout
    assert run("--version").stdout.strip() == f"lossplug {lossplug.__version__}"


def test_list_names_every_loss_with_classes_and_defaults():
    out = run("list")
    assert out.returncode == 0
    rows, current = {}, None
    for line in out.stdout.splitlines()[2:]:
        if line.startswith(" "):  # the parameters column wraps onto indented lines
            rows[current] += " " + line.strip()
        elif line:
            current = line.split()[0]
            rows[current] = line
    for name, cls in zip(NAMES, CLASSES, strict=True):
        assert name in rows and cls in rows[name]
    assert "delta=1.0" in rows["huber"]
    assert "pos_weight=1.0" in rows["weighted_bce"] and "neg_weight=1.0" in rows["weighted_bce"]
    assert "from_logits=False" in rows["dice"] and "smooth=1e-05" in rows["dice"]
    assert "aggregation='sample'" in rows["dice"] and "reduction='mean'" in rows["dice"]
    assert "eps=1e-07" in rows["bce"]


def test_show_prints_formula_parameters_and_yaml():
    out = run("show", "huber")
    assert out.returncode == 0
    text = out.stdout
    assert "min(|e|, delta)" in text  # the plain formula
    assert r"\delta" in text  # and its LaTeX
    assert "lossplug.torch.HuberLoss" in text and "lossplug.keras.HuberLoss" in text
    assert any(line.split()[:2] == ["delta", "1.0"] for line in text.splitlines())
    assert "defaults: [loss: huber]" in text and "loss.delta=1.0" in text
    assert "name: huber" in text  # the shipped Hydra config


@pytest.mark.parametrize("args", [["show", "hubber"], ["plot", "hubber", "--out", "x.png"]])
def test_unknown_loss_is_one_line_listing_the_valid_names(args, tmp_path):
    out = subprocess.run([str(LOSSPLUG), *args], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown loss 'hubber'" in lines[0]
    assert all(name in lines[0] for name in NAMES)


def test_plot_bad_parameter_and_bad_file_are_one_line_errors(tmp_path):
    for args, expected in [
        (["huber:delta=-1"], "delta=-1 is invalid"),
        (["huber:detla=2"], "unknown parameter(s) detla"),
        (["huber:delta"], "bad parameter 'delta'"),
    ]:
        out = run("plot", *args, "--out", str(tmp_path / "x.png"))
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
        assert expected in out.stderr
    out = run("plot", "mse", "--out", str(tmp_path / "x.jpg"))
    assert out.returncode == 2 and ".png" in out.stderr
    out = run("plot", "mse", "--out", str(tmp_path / "missing" / "x.png"))
    assert out.returncode == 2 and "cannot write" in out.stderr
    assert "Traceback" not in out.stderr


def _image(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_plot_writes_a_png_of_the_expected_size(tmp_path):
    out_file = tmp_path / "curves.png"
    out = run("plot", "huber:delta=0.5", "mse", "weighted_bce:pos_weight=3,neg_weight=0.5",
              "--out", str(out_file))
    assert out.returncode == 0, out.stderr
    assert "1000 x 400 px" in out.stdout
    pixels = _image(out_file)
    assert pixels.shape == (400, 1000, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # curves, text and axes, not a blank

    small = tmp_path / "small.png"
    out = run("plot", *NAMES, "--out", str(small), "--dpi", "50", "--title", "all nine")
    assert out.returncode == 0, out.stderr
    assert _image(small).shape == (200, 500, 3)


def test_plot_curves_follow_the_hand_worked_formulas():
    from lossplug.tools import plots as _plots

    e, loss, grad = _plots.curve("huber", {"delta": 0.5})
    q = np.minimum(np.abs(e), 0.5)
    np.testing.assert_allclose(loss, 0.5 * q**2 + 0.5 * (np.abs(e) - q), atol=1e-12)
    np.testing.assert_allclose(grad, np.clip(e, -0.5, 0.5), atol=1e-6)
    e, loss, grad = _plots.curve("mse")
    np.testing.assert_allclose(grad, 2 * e, atol=1e-5)
    # BCE: y = 1, p = 1 + e on the left; y = 0, p = e on the right; -log of the right probability
    e, loss, grad = _plots.curve("weighted_bce", {"pos_weight": 3.0, "from_logits": True})
    left = e < 0
    np.testing.assert_allclose(loss[left], -3.0 * np.log1p(e[left]), rtol=1e-9)
    np.testing.assert_allclose(loss[~left], -np.log1p(-e[~left]), rtol=1e-9)
    np.testing.assert_allclose(grad[~left], 1 / (1 - e[~left]), rtol=1e-5)
    e, loss, _ = _plots.curve("sparse_categorical_ce")
    np.testing.assert_allclose(loss, -np.log(1 - e), rtol=1e-9)
    e, loss, _ = _plots.curve("kl_div")
    np.testing.assert_allclose(loss, 0.5 * np.log(0.5 / (0.5 + e)) + 0.5 * np.log(0.5 / (0.5 - e)))
    e, loss, _ = _plots.curve("dice", {"smooth": 0.0})  # y = (1, 1, 0, 0), y_pred = |y - e|
    np.testing.assert_allclose(loss, 1 - 2 * 2 * (1 - e) / (2 * (1 - e) ** 2 + 2 * e**2 + 2))


def test_import_cli_imports_no_framework():
    code = (
        "import sys, lossplug.tools.cli, lossplug.tools.parity, lossplug.tools.plots; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'tensorflow', 'keras', 'jax', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_check_runs_every_installed_framework_and_passes():
    out = run("check")
    assert out.returncode == 0, out.stdout + out.stderr
    for title in ["torch f64", "torch f32", "keras/tensorflow", "keras/jax", "keras/torch"]:
        assert title in out.stdout.splitlines()[4]  # the header row: every installed framework ran
    assert "torch fused" not in out.stdout  # its own choice, --frameworks torch-fused
    rows = [line for line in out.stdout.splitlines() if line.split()[:1] and line.split()[0] in NAMES]
    assert {r.split()[0] for r in rows} == set(NAMES)
    assert all(r.count(" ok ") == 5 for r in rows)
    assert "OK: all" in out.stdout and "MISMATCH" not in out.stdout
    # progress on stderr (not a terminal here: the lines to keep), one per framework column
    for title in ["torch f64", "torch f32", "keras/tensorflow", "keras/jax", "keras/torch"]:
        lines = out.stderr.splitlines()
        assert any(line.startswith(f"{title}: ") and " cases done" in line for line in lines), title


def test_check_exits_1_on_a_mismatch():
    # float32 cannot reproduce the float64 reference exactly: a zero tolerance must fail
    out = run("check", "--frameworks", "torch", "--float32-tol", "0")
    assert out.returncode == 1
    assert "MISMATCH" in out.stdout and "FAILED:" in out.stdout
    assert "torch f64" in out.stdout  # float64 still passes its own tolerance
    mismatched = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("MISMATCH")}
    assert all(m.split("/")[0] in NAMES for m in mismatched)


_HIDE_FRAMEWORKS = """
import sys
class Hide:  # makes torch, keras, jax and tensorflow look uninstalled to this process
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "keras", "jax", "tensorflow"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
from lossplug.tools.cli import main
sys.exit(main(["check"]))
"""


def test_check_skips_missing_frameworks_with_a_note():
    out = subprocess.run([sys.executable, "-c", _HIDE_FRAMEWORKS], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "note: torch: skipped, torch is not installed" in out.stdout
    assert "note: keras/jax: skipped, keras is not installed" in out.stdout
    assert "nothing to compare" in out.stdout
    assert "torch f32" not in out.stdout.splitlines()[4]


def test_parity_compare_flags_a_wrong_value():
    from lossplug.tools import parity as _parity

    ref = {"mean": np.float64(2.0), "sum": np.float64(8.0), "none": np.array([1.0, 3.0])}
    good = {"mean": 2.0 + 1e-7, "sum": 8.0, "none": [1.0, 3.0]}
    assert _parity.compare(ref, good, "float32")[0]
    assert not _parity.compare(ref, dict(good, sum=8.01), "float32")[0]
    assert not _parity.compare(ref, dict(good, none=[1.0, 3.0, 0.0]), "float32")[0]
    assert not _parity.compare(ref, dict(good, mean=float("nan")), "float32")[0]
