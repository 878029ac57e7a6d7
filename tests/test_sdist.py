"""The sdist is complete: it holds every source and test file, and its tests run once unpacked.

The sdist is built (``python -m build --sdist --no-isolation``) from a copy of the files git
tracks or would track (``git ls-files --cached --others --exclude-standard``), so build outputs
stay out of the checkout. Running the whole suite from it would take the suite's time; a small
subset runs from the unpacked directory, with its own ``src/`` first on ``sys.path``, which needs
the tests' ``conftest.py`` and helpers (``loss_cases.py``) and the package's data (the Hydra YAMLs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _source_files() -> list[str]:
    if not (ROOT / ".git").exists():  # already an unpacked sdist: its files are the list
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)]
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdist")
    source = tmp / "source"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                            str(tmp / "dist"), str(source)], cwd=tmp, env=env, capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (archive,) = (tmp / "dist").glob("lossplug-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp / "unpacked", filter="data")
    top = names[0].split("/")[0]
    members = {n.split("/", 1)[1] for n in names if "/" in n}
    return members, tmp / "unpacked" / top


def test_sdist_holds_every_source_and_test_file(sdist):
    members, _ = sdist
    for must in ["LICENSE", "README.md", "pyproject.toml", "MANIFEST.in", "mkdocs.yml",
                 "tests/conftest.py", "tests/loss_cases.py", "tests/keras/conftest.py",
                 "tests/keras/keras_helpers.py", "tests/recipes/conftest.py",
                 "tests/recipes/recipe_configs.py", "src/lossplug/conf/loss/mse.yaml",
                 "configs/train.yaml", "recipes/train.py", "docs/gen_mathjax.py", "scripts/test.sh"]:
        assert must in members, must
    wanted = [f for f in _source_files()
              if f.split("/")[0] in ("src", "tests", "recipes", "configs", "docs", "benchmarks", "scripts")
              and not f.endswith(("docs/benchmarks.json", ".ckpt", ".keras"))]
    missing = sorted(set(wanted) - members)
    assert not missing, f"files not in the sdist: {missing[:20]}"
    assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]


def test_sdist_metadata_has_license_and_urls(sdist):
    _, unpacked = sdist
    pkg_info = (unpacked / "PKG-INFO").read_text()
    assert "License-Expression: MIT" in pkg_info
    assert "License-File: LICENSE" in pkg_info
    assert "MIT License" in (unpacked / "LICENSE").read_text()
    urls = tomllib.loads((unpacked / "pyproject.toml").read_text())["project"]["urls"]
    for key in ("Homepage", "Source", "Issues"):
        assert urls[key].startswith("https://")
        assert f"Project-URL: {key}, {urls[key]}" in pkg_info


def test_a_subset_of_the_tests_runs_from_the_unpacked_sdist(sdist):
    _, unpacked = sdist
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(unpacked / "src"), OMP_NUM_THREADS="1")
    where = subprocess.run([sys.executable, "-c", "import lossplug; print(lossplug.__file__)"],
                           cwd=unpacked, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(unpacked)  # the sdist's package, not the checkout's
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not keras and not slow",
         "tests/test_smoke.py", "tests/test_values_hand.py", "tests/test_hydra_group.py",
         # the shipped YAMLs from the sdist's package data, built for NumPy (no framework import)
         "-k", "not torch and (not test_hydra_group or generated_text or instantiate_numpy)"],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last, last
