"""The oldest Python that pyproject.toml allows (3.10) compiles every module and runs the code
that copies functions (``code.replace(co_qualname=...)`` needed 3.11 and broke ``import
lossplug.torch`` there). This machine's image carries CPython 3.10 beside the 3.11 of the venv."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _oldest_python() -> str:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = re.fullmatch(r">=(\d+)\.(\d+)", spec).groups()
    return f"python{major}.{minor}"


@pytest.fixture(scope="module")
def oldest():
    """That interpreter: a pyenv install (this machine's image has one) or one on PATH that runs."""
    name = _oldest_python()
    found = sorted(Path.home().glob(f".pyenv/versions/{name[6:]}.*/bin/{name}")) + [shutil.which(name)]
    for exe in filter(None, found):
        if subprocess.run([str(exe), "-c", "pass"], capture_output=True).returncode == 0:
            return str(exe)
    pytest.skip(f"no {name} here to check requires-python with")


def test_every_module_compiles_on_the_oldest_python(oldest):
    files = [str(p) for p in (ROOT / "src").rglob("*.py")]
    proc = subprocess.run([oldest, "-m", "py_compile", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_per_class_function_copy_runs_on_the_oldest_python(oldest):
    import lossplug.torch as lt

    source = textwrap.dedent(inspect.getsource(lt._own_copy))
    program = source + textwrap.dedent("""
        import types

        class Base:
            def forward(self, x):
                return x + 1

        class Child(Base):
            pass

        copy = _own_copy(Base.forward, Child)
        assert copy.__code__ is not Base.forward.__code__
        assert copy(None, 1) == 2 and copy.__qualname__ == "Child.forward"
        print("ok")
    """)
    proc = subprocess.run([oldest, "-c", "import types\n" + program], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
