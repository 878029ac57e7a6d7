"""The docs site: it builds with ``mkdocs build --strict``, and what it shows is true.

The build (about 20-30 s on 2 cores: it imports torch, Keras and draws nine plots) runs once per
run (tests/conftest.py's docs_site, shared with test_docs_math); the checks then read the built
HTML: every loss page has its math, a real plot and examples whose numbers are what the code
gives; the API reference shows the generated signatures.
"""

import html
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lossplug._spec import REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def test_nav_lists_every_loss_and_every_page():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import nav_hook  # the mkdocs hook that adds a nav entry per registry loss
    finally:
        sys.path.remove(str(ROOT / "docs"))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert "docs/nav_hook.py" in config["hooks"]
    config = nav_hook.on_config(config)
    pages = []

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            walk(value) if isinstance(value, list) else pages.append(value)

    walk(config["nav"])
    assert [p for p in pages if p.startswith("losses/") and p != "losses/index.md"] == [
        f"losses/{name}.md" for name in REGISTRY
    ]
    for page in ["quickstart.md", "conventions.md", "pitfalls.md", "reductions.md", "recipes.md",
                 "hydra.md", "subclassing.md", "cli.md", "benchmarks.md", "api/torch.md"]:
        assert page in pages
    handwritten = {p for p in pages if not p.startswith("losses/")}
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk <= handwritten, f"pages missing from the nav: {on_disk - handwritten}"


@pytest.fixture(scope="module")
def site(docs_site):
    """The site built once per run by ``mkdocs build --strict`` (tests/conftest.py's docs_site)."""
    return docs_site


def _article(path: Path) -> str:
    page = path.read_text()
    return page[page.index("<article"):page.index("</article>")]


def _code_blocks(article: str) -> list[str]:
    blocks = re.findall(r"<pre[^>]*>(.*?)</pre>", article, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks]


def _run_example(code: str) -> tuple[float, float]:
    """Run a snippet; return the value of its last line and the number in that line's comment."""
    *body, last = code.strip().splitlines()
    expression, comment = last.split("  # ")
    namespace = {}
    exec("\n".join(body), namespace)
    value = float(eval(expression, namespace))
    return value, float(comment.split(",")[0])


@pytest.mark.slow
def test_every_loss_page_has_math_parameters_and_a_plot(site):
    from PIL import Image

    for name, spec in REGISTRY.items():
        article = _article(site / "losses" / name / "index.html")
        assert '<div class="arithmatex">' in article
        assert html.escape(spec.math, quote=False) in article  # the registry's LaTeX, for MathJax
        for param in spec.params:
            assert f"<code>{param.name}</code>" in article
        assert f'src="../{name}.png"' in article
        with Image.open(site / "losses" / f"{name}.png") as image:
            assert image.format == "PNG" and image.size == (1000, 400)
        assert f"loss: {name}" in article  # the Hydra defaults line
    index = _article(site / "losses" / "index.html")
    assert all(f'href="../losses/{n}/"' in index or f'href="{n}/"' in index for n in REGISTRY)


@pytest.mark.slow
def test_loss_page_examples_give_the_numbers_they_show(site):
    for name in REGISTRY:
        blocks = _code_blocks(_article(site / "losses" / name / "index.html"))
        numpy_block = next(b for b in blocks if "import lossplug.numpy" in b)
        torch_block = next(b for b in blocks if "from lossplug.torch" in b)
        value, shown = _run_example(numpy_block)
        assert value == pytest.approx(shown, rel=1e-5), name
        value, shown = _run_example(torch_block)  # float32
        assert value == pytest.approx(shown, rel=1e-5), name


@pytest.mark.slow
def test_api_reference_shows_generated_signatures_and_docstrings(site):
    torch_page = _article(site / "api" / "torch" / "index.html")
    keras_page = _article(site / "api" / "keras" / "index.html")
    numpy_page = _article(site / "api" / "numpy" / "index.html")
    text = {k: html.unescape(re.sub(r"<[^>]+>", "", v))
            for k, v in [("torch", torch_page), ("keras", keras_page), ("numpy", numpy_page)]}
    assert "HuberLoss(*, delta=1.0, reduction='mean')" in text["torch"]
    assert "huber(y_pred, y_true, *, delta=1.0, reduction='mean')" in text["numpy"]
    keras_signature = r"HuberLoss\(\s*\*,\s*delta=1.0,\s*reduction=.mean.,\s*name=None,\s*dtype=None"
    assert re.search(keras_signature, text["keras"])
    for spec in REGISTRY.values():
        for page, anchor in [(torch_page, f"lossplug.torch.{spec.class_name}"),
                             (keras_page, f"lossplug.keras.{spec.class_name}"),
                             (numpy_page, f"lossplug.numpy.{spec.name}")]:
            assert f'id="{anchor}"' in page
        assert html.escape(spec.math, quote=False) in torch_page
    assert "where the loss turns from quadratic to linear" in text["torch"]
    assert ":math:" not in text["torch"] + text["keras"]  # Sphinx roles became MathJax


@pytest.mark.slow
def test_quick_start_numpy_example_is_right(site):
    blocks = _code_blocks(_article(site / "quickstart" / "index.html"))
    code = next(b for b in blocks if "lossplug.get(\"huber\"" in b)
    value, shown = _run_example(code)
    # hand-worked: errors 0.5 and 1.0 with delta 0.5 give 0.125 and 0.125 + 0.5 * 0.5
    assert value == shown == np.mean([0.125, 0.375])
