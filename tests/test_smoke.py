import subprocess
import sys


def test_import_lossplug_imports_no_framework():
    code = (
        "import sys, lossplug; lossplug.get('huber'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'keras', 'jax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
