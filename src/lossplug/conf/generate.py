"""Write ``loss/<name>.yaml`` for every registry loss: ``python -m lossplug.conf.generate``.

The YAML files are generated from ``lossplug._spec.REGISTRY`` so they carry exactly the registry's
parameters and defaults; ``tests/test_hydra_group.py`` fails when a file and the registry differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lossplug._presets import PRESETS, Preset
from lossplug._spec import REGISTRY, LossSpec

LOSS_DIR = Path(__file__).with_name("loss")

# A config node in Hydra's ConfigStore (registered by the hydra_plugins.lossplug_searchpath plugin)
# whose only content is the OmegaConf flag struct=False; merged into each loss node, it lets a
# misspelt override such as loss.delt=0.5 reach lossplug.get, which names the loss and its
# parameters, instead of Hydra's generic "Key 'delt' is not in struct".
OPEN_NODE = "lossplug_open_loss_node"


def _yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"no YAML spelling for default {value!r}")


def render(loss_spec: LossSpec) -> str:
    """The YAML text of one loss: a header, the defaults list, ``_target_``, ``name``, parameters."""
    lines = [
        f"# {loss_spec.class_name} (lossplug registry name {loss_spec.name!r}): {loss_spec.summary}",
        "# Generated from lossplug._spec.REGISTRY by `python -m lossplug.conf.generate`; do not edit.",
        f"# Select it with `loss={loss_spec.name}` or `defaults: [loss: {loss_spec.name}]`, change a",
        "# parameter with `loss.<parameter>=<value>`, and build it with",
        '# hydra.utils.instantiate(cfg.loss, framework="torch" | "keras" | "numpy");',
        "# without a framework (here or loss.framework=torch on the command line) it raises a",
        "# ValueError at once, before any training step.",
        "# Parameters are checked by lossplug when the loss is built: an unknown or misspelt one",
        "# raises lossplug.LossParameterError naming the loss and its parameters.",
        "defaults:",
        f"  - /{OPEN_NODE}@_here_",
        "  - _self_",
        "",
        "_target_: lossplug.get",
        f"name: {loss_spec.name}",
        "# numpy | torch | keras: required, usually given by instantiate(cfg.loss, framework=...)",
        "framework: null",
    ]
    for param in loss_spec.params:
        lines.append(f"# {param.doc}")
        lines.append(f"{param.name}: {_yaml_value(param.default)}")
    return "\n".join(lines) + "\n"


def render_preset(preset: Preset) -> str:
    """The YAML text of a combined-loss preset: each term composed from its own ``loss/<name>.yaml``."""
    lines = [
        f"# CombinedLoss preset {preset.name!r} (lossplug registry name 'combined'): {preset.summary}",
        "# Generated from lossplug._presets.PRESETS by `python -m lossplug.conf.generate`; do not edit.",
        f"# Select it with `loss={preset.name}`; every term carries all of its loss's parameters:",
        f"# `loss.terms.{preset.terms[0][0]}.smooth=0.5`, a weight with "
        f"`loss.weights.{preset.terms[-1][0]}=0.5`.",
        '# Build it with hydra.utils.instantiate(cfg.loss, framework="torch" | "keras").',
        "defaults:",
        f"  - /{OPEN_NODE}@_here_",
    ]
    lines += [f"  - /loss@terms.{key}: {name}" for key, name in preset.terms]
    lines += [
        "  - _self_",
        "",
        "_target_: lossplug.get",
        "name: combined",
        f"preset: {preset.name}",
        "# torch | keras: required, usually given by instantiate(cfg.loss, framework=...)",
        "framework: null",
        "# the terms are built by lossplug for the framework, not by Hydra",
        "_recursive_: false",
        "terms:",
    ]
    for key, _ in preset.terms:
        lines.append(f"  {key}:")
        lines += [f"    {k}: {_yaml_value(v)}" for k, v in preset.term_params(key).items()]
    lines.append("weights:")
    lines += [f"  {key}: 1.0" for key, _ in preset.terms]
    return "\n".join(lines) + "\n"


def _texts():
    yield from ((f"{name}.yaml", render(s)) for name, s in REGISTRY.items())
    yield from ((f"{name}.yaml", render_preset(p)) for name, p in PRESETS.items())


def main(argv: list[str] | None = None) -> int:
    """Write every file (or, with ``--check``, report the stale ones and return 1)."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    stale = []
    for filename, text in _texts():
        path = LOSS_DIR / filename
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not check:
            path.write_text(text)
    known = set(REGISTRY) | set(PRESETS)
    extra = sorted(p.name for p in LOSS_DIR.glob("*.yaml") if p.stem not in known)
    if extra:
        print(f"files with no registry entry: {', '.join(extra)}", file=sys.stderr)
    if stale:
        print(("stale: " if check else "wrote: ") + ", ".join(stale), file=sys.stderr)
    return 1 if (check and stale) or extra else 0


if __name__ == "__main__":
    raise SystemExit(main())
