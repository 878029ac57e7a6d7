"""mkdocs hook: the "Losses" section of the nav lists one page per registry entry.

mkdocs.yml names only ``losses/index.md`` under "Losses"; ``on_config`` appends
``<name>: losses/<name>.md`` for every entry of ``lossplug._spec.REGISTRY``, in registry order,
so a new loss appears in the nav with no edit here (its page comes from ``gen_loss_pages.py``).
"""

from __future__ import annotations

from lossplug._spec import REGISTRY

SECTION = "Losses"


def loss_pages() -> list[dict[str, str]]:
    return [{name: f"losses/{name}.md"} for name in REGISTRY]


def fill(nav: list) -> list:
    """``nav`` with the "Losses" section's loss pages (after its index) taken from the registry."""
    for item in nav:
        if isinstance(item, dict) and SECTION in item:
            pages = [p for p in item[SECTION] if not (isinstance(p, dict) and
                                                      next(iter(p.values()), "").startswith("losses/")
                                                      and next(iter(p.values())) != "losses/index.md")]
            item[SECTION] = pages + loss_pages()
            return nav
    raise ValueError(f"mkdocs.yml's nav has no {SECTION!r} section for the loss pages")


def on_config(config, **kwargs):
    config["nav"] = fill(config["nav"])
    return config
