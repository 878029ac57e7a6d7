"""A griffe extension for the API reference: Sphinx ``:math:`x``` roles become ``$x$``.

The torch and Keras class docstrings write their one-line formula as a Sphinx role (``help()``
shows it as plain text); pymdownx.arithmatex renders ``$x$`` with MathJax.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":math:`([^`]+)`")


class MathRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ":math:" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(lambda m: f"${m.group(1)}$", obj.docstring.value)
