"""A missing optional dependency is an ImportError that names the extra to install.

Each case runs in a subprocess whose ``sys.meta_path`` starts with a finder that makes the named
modules uninstalled (it raises ``ModuleNotFoundError`` with ``name`` set, as the import system
does for a module it cannot find), then runs the real import statement or command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, sys
class Uninstalled:
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Uninstalled(sys.argv[1].split(",")))
def report(exc):
    print("RESULT " + json.dumps({"type": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                                  "message": str(exc)}))
"""


def _run(hidden: str, code: str, *, tmp_path, **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    # an empty Keras home: no keras.json choosing a backend, so Keras's default (tensorflow) applies
    environ.update(KERAS_HOME=str(tmp_path / "keras_home"), TF_CPP_MIN_LOG_LEVEL="3", **env)
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code, hidden], capture_output=True,
                          text=True, timeout=120, env=environ, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


_IMPORT = """
try:
    import {module}
except ImportError as exc:
    report(exc)
else:
    print("RESULT " + json.dumps({{"type": None, "mro": [], "message": "imported"}}))
"""


def test_import_lossplug_torch_without_torch(tmp_path):
    out = _run("torch", _IMPORT.format(module="lossplug.torch"), tmp_path=tmp_path)
    assert "ImportError" in out["mro"]
    assert out["message"] == ('lossplug.torch needs torch, and torch is not installed: '
                              'pip install "lossplug[torch]"')


def test_get_torch_without_torch(tmp_path):
    code = ("import lossplug\ntry:\n    lossplug.get('mse', framework='torch')\n"
            "except ImportError as exc:\n    report(exc)\n")
    out = _run("torch", code, tmp_path=tmp_path)
    assert 'pip install "lossplug[torch]"' in out["message"]


def test_import_lossplug_keras_without_keras(tmp_path):
    out = _run("keras", _IMPORT.format(module="lossplug.keras"), tmp_path=tmp_path)
    assert "ImportError" in out["mro"]
    assert "keras is not installed" in out["message"]
    assert 'pip install "lossplug[keras]"' in out["message"]


def test_import_lossplug_keras_default_backend_missing_says_set_keras_backend(tmp_path):
    pytest.importorskip("keras")
    out = _run("tensorflow", _IMPORT.format(module="lossplug.keras"), tmp_path=tmp_path)
    assert "ImportError" in out["mro"]
    message = out["message"]
    assert "Keras is installed but its backend 'tensorflow' is not" in message
    # Keras writes its default config (backend tensorflow) into KERAS_HOME on first import
    assert ("KERAS_BACKEND is not set, and Keras's default backend is tensorflow" in message
            or "keras.json says backend 'tensorflow'" in message), message
    assert "set KERAS_BACKEND" in message
    assert 'pip install "lossplug[tensorflow]"' in message
    # it offers the backends this environment has
    has = [b for b in ("jax", "torch") if _installed(b)]
    if has:
        assert f"KERAS_BACKEND={has[0]}" in message


def test_import_lossplug_keras_chosen_backend_missing(tmp_path):
    pytest.importorskip("keras")
    out = _run("jax", _IMPORT.format(module="lossplug.keras"), tmp_path=tmp_path, KERAS_BACKEND="jax")
    message = out["message"]
    assert "backend 'jax' is not (KERAS_BACKEND=jax)" in message
    assert 'pip install "lossplug[jax]"' in message


def test_import_lossplug_keras_backend_from_keras_json_missing(tmp_path):
    pytest.importorskip("keras")
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}')
    out = _run("jax", _IMPORT.format(module="lossplug.keras"), tmp_path=tmp_path)
    message = out["message"]
    assert f"KERAS_BACKEND is not set, and {home / 'keras.json'} says backend 'jax'" in message
    assert "backend 'jax' is not" in message and 'pip install "lossplug[jax]"' in message


def test_import_lossplug_needs_no_framework(tmp_path):
    code = ("import lossplug, lossplug.numpy\n"
            "print('RESULT ' + json.dumps({'type': None, 'mro': [], 'message': lossplug.available()[0]}))\n")
    out = _run("torch,keras,tensorflow,jax,matplotlib", code, tmp_path=tmp_path)
    assert out["type"] is None and out["message"] == "mse"


def test_plot_without_matplotlib(tmp_path):
    code = (
        "from lossplug.tools import plots\n"
        "try:\n    plots.plot([('mse', {})], 'out.png')\n"
        "except ImportError as exc:\n    report(exc)\n"
    )
    out = _run("matplotlib", code, tmp_path=tmp_path)
    assert "ImportError" in out["mro"]
    assert out["message"] == ('lossplug plot needs matplotlib, and matplotlib is not installed: '
                              'pip install "lossplug[plot]"')


def test_plot_command_without_matplotlib_prints_the_extra(tmp_path):
    code = (
        "from lossplug.tools.cli import main\n"
        "import contextlib, io\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n    rc = main(['plot', 'mse', '--out', 'out.png'])\n"
        "print('RESULT ' + json.dumps({'type': rc, 'mro': [], 'message': err.getvalue()}))\n"
    )
    out = _run("matplotlib", code, tmp_path=tmp_path)
    assert out["type"] == 1
    assert 'lossplug plot: error: lossplug plot needs matplotlib' in out["message"]
    assert 'pip install "lossplug[plot]"' in out["message"]
    assert not (tmp_path / "out.png").exists()


def test_every_extra_named_in_a_message_exists():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("torch", "keras", "plot", "tensorflow", "jax"):
        assert name in extras, name
    assert any(req.startswith("matplotlib") for req in extras["plot"])
    assert any(req.startswith("torch") for req in extras["torch"])
    assert any(req.startswith("keras") for req in extras["keras"])


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
