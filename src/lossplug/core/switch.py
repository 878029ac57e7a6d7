"""Process-wide settings turned on or off by a plain call or for a ``with`` block."""

from __future__ import annotations

import contextlib
import os

_OFF = ("0", "false", "no", "off")


class Switch:
    """On or off for the whole process (on unless the environment variable ``env`` says ``0``,
    ``false``, ``no`` or ``off``); read as ``switch.on``."""

    def __init__(self, env: str | None = None):
        self.on = (os.environ.get(env, "1") if env else "1").strip().lower() not in _OFF

    def set(self, enabled: bool):
        """Turn it on or off; the result, used as a context manager, restores the previous setting."""
        previous, self.on = self.on, bool(enabled)
        return self._restore(previous)

    @contextlib.contextmanager
    def _restore(self, previous):
        try:
            yield
        finally:
            self.on = previous
