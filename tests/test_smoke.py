"""``import lossplug`` (and its NumPy path) imports no deep-learning framework."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("code", [
    "import lossplug; lossplug.get('huber'); lossplug.available()",
    "import lossplug.numpy as L; L.dice([[0.5, 0.5]], [[0, 1]]); L.sparse_categorical_ce([[0.5, 0.5]], [1])",
])
def test_import_lossplug_imports_no_framework(code):
    code += (
        "; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'keras', 'jax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_framework_loads_on_attribute_access():
    code = "import sys, lossplug; lossplug.torch.HuberLoss; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
