"""ImportErrors that say what to install when an optional dependency is missing.

``lossplug`` itself needs only NumPy; ``lossplug.torch`` needs the ``torch`` extra,
``lossplug.keras`` the ``keras`` extra and a Keras backend, ``lossplug plot`` the ``plot`` extra.
Each public face imports its framework inside ``try`` and turns a failure into
:class:`MissingDependency`, whose message names the ``pip install "lossplug[...]"`` to run (and,
for Keras, the ``KERAS_BACKEND`` to set). The original error stays attached as ``__cause__``.
"""

from __future__ import annotations

import importlib.util
import json
import os

# Keras 3's backends and the lossplug extra that installs each (openvino has none of ours)
KERAS_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def _root(exc: ImportError) -> str | None:
    return exc.name.split(".")[0] if getattr(exc, "name", None) else None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(what: str, module: str, extra: str, exc: ImportError) -> MissingDependency:
    """``what`` (e.g. ``"lossplug.torch"``) could not import ``module``: install ``extra``."""
    if _root(exc) == module:
        reason = f"{module} is not installed"
    else:  # installed, but its own import failed: say so, with the original error
        reason = f"importing {module} failed ({type(exc).__name__}: {exc})"
    return MissingDependency(f'{what} needs {module}, and {reason}: pip install "lossplug[{extra}]"')


def _keras_config_backend() -> tuple[str, str | None]:
    """Keras's config file (``$KERAS_HOME/keras.json``, else ``~/.keras/keras.json``) and its backend."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(home, "keras.json")
    try:
        with open(path) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    return path, backend if isinstance(backend, str) else None


def keras_import_error(exc: ImportError) -> MissingDependency:
    """``import keras`` failed: Keras itself is missing, or the backend it was told to use."""
    root = _root(exc)
    if root == "keras":
        return MissingDependency(
            'lossplug.keras needs Keras 3 and a backend, and keras is not installed: '
            'pip install "lossplug[keras]" plus a backend, e.g. "lossplug[jax]" or "lossplug[tensorflow]"'
        )
    if root in KERAS_BACKENDS:
        chosen = os.environ.get("KERAS_BACKEND")
        config, configured = _keras_config_backend()
        if chosen:
            how = f"KERAS_BACKEND={chosen}"
        elif configured:
            how = f"KERAS_BACKEND is not set, and {config} says backend {configured!r}"
        else:
            how = "KERAS_BACKEND is not set, and Keras's default backend is tensorflow"
        others = [b for b in KERAS_BACKENDS if b != root and _installed(b)]
        hint = (f"set KERAS_BACKEND to a backend you have ({' or '.join(others)}), e.g. "
                f"KERAS_BACKEND={others[0]}" if others else
                "set KERAS_BACKEND=tensorflow, jax or torch to a backend you install")
        return MissingDependency(
            f"lossplug.keras: Keras is installed but its backend {root!r} is not ({how}): {hint}, "
            f'or install it: pip install "lossplug[{KERAS_BACKENDS[root]}]"'
        )
    return missing("lossplug.keras", "keras", "keras", exc)
