"""The docs site renders its math with no network: MathJax is vendored, and Chromium shows it typeset.

The site is built with ``mkdocs build --strict`` and served from a local HTTP server on
127.0.0.1 (as ``mkdocs serve`` or any static server would); headless Chromium, with background
networking off, loads a loss page and an API page, runs their scripts and dumps the DOM. Every
formula (pymdownx.arithmatex's ``class="arithmatex"``) must hold MathJax's output and no raw TeX,
and every file the pages loaded must have come from the local server.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); where it is absent
the Chromium test is skipped, unless ``LOSSPLUG_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``) makes
that a failure.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["losses/huber/", "api/torch/"]


def _mkdocs_config() -> dict:
    # mkdocs.yml may carry !!python tags in other projects; ours is plain YAML
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_config_loads_no_script_from_the_network():
    scripts = _mkdocs_config()["extra_javascript"]
    assert scripts, "the math needs MathJax"
    assert not [s for s in scripts if re.match(r"(https?:)?//", str(s))]
    assert "javascripts/mathjax/tex-mml-chtml.js" in scripts
    plugins = _mkdocs_config()["plugins"]
    gen_files = next(p["gen-files"] for p in plugins if isinstance(p, dict) and "gen-files" in p)
    assert "docs/gen_mathjax.py" in gen_files["scripts"]


def test_vendored_mathjax_is_version_3_from_the_installed_package():
    pytest.importorskip("mkdocs_gen_files")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_mathjax  # the mkdocs-gen-files script; importing it copies nothing
    finally:
        sys.path.remove(str(ROOT / "docs"))
    namespace = vars(gen_mathjax)
    es5 = namespace["mathjax_es5"]()
    files = [p.relative_to(es5).as_posix() for p in namespace["files"](es5)]
    assert "tex-mml-chtml.js" in files
    assert "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff" in files
    assert "input/tex/extensions/boldsymbol.js" in files  # what \boldsymbol autoloads
    package = json.loads((es5.parent / "package.json").read_text())
    assert package["name"] in ("mathjax", "mathjax-full") and package["version"].startswith("3.")
    assert 'VERSION="3.' in (es5 / "tex-mml-chtml.js").read_text(errors="replace")


@pytest.fixture(scope="module")
def site(docs_site):
    """The site built once per run by ``mkdocs build --strict`` (tests/conftest.py's docs_site)."""
    return docs_site


@pytest.mark.slow
def test_built_pages_reference_nothing_remote(site):
    assert (site / "javascripts" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for page in PAGES:
        text = (site / page / "index.html").read_text()
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"', text)
        assert not remote, (page, remote)
        assert 'class="arithmatex"' in text


class _Formulas(html.parser.HTMLParser):
    """The text and the child tags of every element whose class includes ``arithmatex``."""

    def __init__(self):
        super().__init__()
        self.formulas: list[dict] = []
        self._depth = 0  # > 0 inside a formula
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if self._depth:
            self._depth += 1
            self.formulas[-1]["tags"].add(tag)
        elif "arithmatex" in classes:
            self._depth = 1
            self.formulas.append({"text": "", "tags": set()})

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.formulas[-1]["text"] += data


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, format, *args):
        _QuietHandler.requested.append(self.path)


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")  # session, as docs_site is: so it comes first, before the build
def chromium() -> str:
    """The browser, or a clean skip before the site is built (a failure under .ci/run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LOSSPLUG_REQUIRE_CHROMIUM") == "1":
            pytest.fail("LOSSPLUG_REQUIRE_CHROMIUM=1, but chromium is not installed "
                        "(apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _dump_dom(chromium: str, url: str, profile: Path) -> str:
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_chromium_renders_every_formula_without_raw_tex(chromium, server, page, tmp_path):
    _QuietHandler.requested.clear()
    dom = _dump_dom(chromium, server + page, tmp_path / "profile")
    parser = _Formulas()
    parser.feed(dom)
    assert len(parser.formulas) >= 1, "no formula on the page"
    for formula in parser.formulas:
        # typeset: MathJax's CHTML output replaced the TeX source
        assert "mjx-container" in formula["tags"], formula["text"][:200]
        text = formula["text"]
        assert "\\" not in text and "$$" not in text, f"raw TeX left on {page}: {text[:200]!r}"
    # everything came from the local server: MathJax and the fonts it typeset with
    assert "/javascripts/mathjax/tex-mml-chtml.js" in _QuietHandler.requested
    fonts = "/javascripts/mathjax/output/chtml/fonts/woff-v2/"
    assert any(p.startswith(fonts) for p in _QuietHandler.requested)
