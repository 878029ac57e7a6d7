"""Vendor MathJax into the built site, so its math renders with no network (mkdocs-gen-files).

MathJax 3 comes from the PyPI package ``django-static-mathjax`` (a copy of the MathJax npm
release, files only; the ``docs`` extra installs it): this script copies its ``es5`` build —
``tex-mml-chtml.js``, the CHTML web fonts, the TeX extensions that ``autoload`` fetches, the menu
and accessibility components — to ``javascripts/mathjax/`` of the site, which ``mkdocs.yml``
loads after ``javascripts/mathjax.js`` (the settings). Nothing is fetched when a reader opens a
page; ``tests/test_docs_math.py`` checks that in headless Chromium.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mkdocs_gen_files

DEST = "javascripts/mathjax"
# relative to MathJax's es5/ directory; sre/ (the speech engine, 4 MB) is left out: speech output
# is off by default, and the rest works without it
PARTS = ["tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y"]


def mathjax_es5() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('the docs need MathJax from PyPI: pip install -e ".[docs]" '
                           "(it brings django-static-mathjax)")
    root = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (root / "es5" / "tex-mml-chtml.js").is_file():
        raise RuntimeError(f"no es5/tex-mml-chtml.js under {root}: not the MathJax 3 package")
    return root / "es5"


def files(es5: Path) -> list[Path]:
    out = []
    for part in PARTS:
        path = es5 / part
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return out


def main() -> None:
    es5 = mathjax_es5()
    for path in files(es5):
        with mkdocs_gen_files.open(f"{DEST}/{path.relative_to(es5).as_posix()}", "wb") as f:
            f.write(path.read_bytes())
    with mkdocs_gen_files.open(f"{DEST}/LICENSE", "wb") as f:  # MathJax's Apache-2.0 licence
        f.write((es5.parent / "LICENSE").read_bytes())


if __name__ in ("<run_path>", "__main__"):  # run by mkdocs-gen-files; importing it runs nothing
    main()
