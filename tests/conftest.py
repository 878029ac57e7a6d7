"""Shared fixtures. Imports no framework at module level (the Keras runs collect this file too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from loss_cases import tolerances

_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["float32", "float64"])
def torch_dtype(request):
    """A torch float dtype; every test using it runs once per dtype."""
    import torch

    return getattr(torch, request.param)


@pytest.fixture
def tol(torch_dtype):
    """``rtol``/``atol`` for comparing a ``torch_dtype`` result with a float64 reference."""
    return tolerances(torch_dtype)


@pytest.fixture(autouse=True)
def _seed_torch():
    """A fixed torch seed per test, only where torch is already imported."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


@pytest.fixture(autouse=True)
def _sizes_decide_routes(monkeypatch):
    """Routes by ``derived.NATIVE_UP_TO`` alone, the same on every host: the tests that lower those
    sizes to reach a route must get it. tests/test_crossover.py turns the measured choice back on."""
    from lossplug.frameworks import crossover  # (no framework import)

    monkeypatch.setattr(crossover.MEASURED, "on", False)


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory):
    """The docs site built once per run (``mkdocs build --strict``, 20-30 s), read by test_docs and
    test_docs_math.

    Under pytest-xdist (scripts/test.sh) the workers share one build: the first to need it builds
    it into the run's common temporary folder under a file lock, the others wait and read it.
    """
    import os
    import subprocess
    import sys

    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): each worker builds its own copy
        fcntl = None
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        base = base.parent  # the folder this run's workers share
    out, done = base / "docs_site", base / "docs_site.built"
    with open(base / "docs_site.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            env = dict(os.environ, DISABLE_MKDOCS_2_WARNING="true", NO_MKDOCS_2_WARNING="1",
                       TF_CPP_MIN_LOG_LEVEL="3")
            mkdocs = Path(sys.executable).with_name("mkdocs")
            proc = subprocess.run([str(mkdocs), "build", "--strict", "-d", str(out)], cwd=_ROOT,
                                  env=env, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            assert "WARNING -" not in proc.stderr
            done.touch()
    return out
