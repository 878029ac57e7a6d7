"""Generate one page per loss, with its plot, and the losses index at docs build time.

Run by the mkdocs-gen-files plugin (see mkdocs.yml); nothing it writes is committed. Everything
comes from the registry (``lossplug._spec.REGISTRY``: each entry's ``example``, ``plots`` and
``targets_doc``), the shipped Hydra configs, the NumPy reference (the example values are computed
here) and ``lossplug.tools.plots`` (the curves of the entry's input kind). The nav entries of the
pages are added by ``docs/nav_hook.py``.
"""

from __future__ import annotations

import importlib.resources
import io
import textwrap

import mkdocs_gen_files
import numpy as np

import lossplug.numpy as reference
from lossplug._spec import REGISTRY, LossSpec
from lossplug.tools import plots as _plots

SHAPES = {
    "elementwise": """\
| | NumPy | torch | Keras |
|---|---|---|---|
| `y_pred` | any shape | any shape | any shape |
| `y_true` | same shape | same shape | same shape (`(N,)` against `(N, 1)` is squeezed) |
| `reduction="none"` | `y_pred.shape` | `y_pred.shape` | `y_pred.shape[:-1]` (mean over the last axis) |
""",
    "positions": """\
| | NumPy | torch | Keras |
|---|---|---|---|
| `y_pred` | `(N, C)`, `(N, d1, ..., C)` | `(N, C)`, `(N, C, d1, ...)`, `(C,)` | `(N, C)`, `(N, d1, ..., C)` |
| `y_true` | TARGETS | TARGETS | TARGETS |
| class axis | `-1` | `1` (`0` for 1-D input) | `-1` |
| `reduction="none"` | `(N,)` | `(N,)` | `(N,)` |

Spatial positions `d1, ...` count as samples of their own in the mean; `"none"` averages them per
sample. `axis=` moves the class axis.
""",
    "sample": """\
| | NumPy | torch | Keras |
|---|---|---|---|
| `y_pred` | `(N, ..., C)` | `(N, C, ...)` | `(N, ..., C)` |
| `y_true` | same shape, or an integer label map without the class axis | same | same |
| class axis | `-1` | `1` | `-1` |
| `reduction="none"` | `(N,)` | `(N,)` | `(N,)` |

The sums run over every non-batch axis (over the spatial axes only with `per_class=True`).
`aggregation="batch"` gives one value for the whole batch (Keras: shape `(1,)`). A single-channel
mask may also be `(N, H, W)` with no class axis.
""",
}
def _fmt(value) -> str:
    return repr(np.asarray(value).tolist())


def _call(params: dict, lead: str = "") -> str:
    return ", ".join([lead] * bool(lead) + [f"{k}={v!r}" for k, v in params.items()])


def _yaml(name: str) -> str | None:
    resource = importlib.resources.files("lossplug") / "conf" / "loss" / f"{name}.yaml"
    return resource.read_text() if resource.is_file() else None


def _usage(s: LossSpec) -> str:
    y_pred, y_true, params = s.example
    value = getattr(reference, s.name)(np.asarray(y_pred), np.asarray(y_true), **params)
    override = " ".join(f"loss.{k}={v}" for k, v in params.items()) or "loss.reduction=sum"
    yaml = _yaml(s.name)
    yaml_block = (
        f'```yaml title="lossplug/conf/loss/{s.name}.yaml (shipped)"\n{yaml.rstrip()}\n```\n'
        if yaml else ""
    )
    return f"""\
=== "NumPy"

    ```python
    import numpy as np
    import lossplug.numpy as lp

    y_pred = np.array({_fmt(y_pred)})
    y_true = np.array({_fmt(y_true)})
    lp.{s.name}({_call(params, "y_pred, y_true")})  # {value:.6g}
    ```

=== "torch"

    ```python
    import torch
    from lossplug.torch import {s.class_name}

    loss = {s.class_name}({_call(params)})
    loss(torch.tensor({_fmt(y_pred)}), torch.tensor({_fmt(y_true)}))  # {value:.6g}, as NumPy (float32)
    ```

=== "Keras"

    ```python
    import numpy as np
    from lossplug.keras import {s.class_name}

    loss = {s.class_name}({_call(params)})
    loss(np.array({_fmt(y_true)}), np.array({_fmt(y_pred)}))  # {value:.6g}, as NumPy (float32)
    model.compile(optimizer="adam", loss=loss)  # saves and loads with the model
    ```

=== "Hydra YAML"

    ```yaml
    # your app's config
    defaults:
      - loss: {s.name}
    ```

    ```python
    loss = hydra.utils.instantiate(cfg.loss, framework="torch")  # or "keras", "numpy"
    ```

    On the command line: `python my_app.py loss={s.name} {override}`.

{textwrap.indent(yaml_block, "    ")}"""


def _params_table(s: LossSpec) -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    rows += [f"| `{p.name}` | `{p.default!r}` | {p.doc.replace('|', '&#124;')} |" for p in s.params]
    return "\n".join(rows)


def _plot(s: LossSpec) -> str:
    variants = list(s.plots)
    buf = io.BytesIO()
    _plots.plot([(s.name, v) for v in variants], buf)
    with mkdocs_gen_files.open(f"losses/{s.name}.png", "wb") as f:
        f.write(buf.getvalue())
    args = " ".join(s.name + ("" if not v else ":" + ",".join(f"{k}={x}" for k, x in v.items()))
                    for v in variants)
    curve = _plots.curve_shape(s.name)
    return f"""\
![{s.name}: loss and gradient against the error]({s.name}.png)

The x axis is the {curve.xlabel}; the gradient is dL/de with the target held fixed. Drawn with
`lossplug plot {args} --out {s.name}.png` (see the [command line](../cli.md)).
"""


def _ref(path: str) -> str:
    """A cross-reference to the API reference (mkdocstrings' autorefs)."""
    return f"[`{path}`][{path}]"


def page(s: LossSpec) -> str:
    shapes = SHAPES[s.kind].replace("TARGETS", s.targets_doc)
    return f"""\
# {s.class_name} — `{s.name}`

{s.summary}

$$
{s.math}
$$

| NumPy | torch | Keras | Hydra |
|---|---|---|---|
| {_ref(f"lossplug.numpy.{s.name}")} | {_ref(f"lossplug.torch.{s.class_name}")} \
| {_ref(f"lossplug.keras.{s.class_name}")} | `loss={s.name}` |
| `f(y_pred, y_true, **params)` | `loss(y_pred, y_true)` | `loss(y_true, y_pred)` \
| `instantiate(cfg.loss, framework=...)` |

## Parameters

Every parameter is keyword-only; a bad value raises `lossplug.LossParameterError` when the loss is
built. `lossplug show {s.name}` prints the same table.

{_params_table(s)}

## Shapes

{shapes}

## Usage

{_usage(s)}

## Loss and gradient

{_plot(s)}"""


def index() -> str:
    rows = ["| name | class | mean-reduction formula |", "|---|---|---|"]
    for s in REGISTRY.values():
        math = s.math.replace("|", r"\vert ")  # a bare | would split the table cell
        rows.append(f"| [`{s.name}`]({s.name}.md) | `{s.class_name}` | ${math}$ |")
    return (
        "# The losses\n\nEach loss has the same name in the registry, the NumPy function and the "
        "Hydra group, and the same class name in `lossplug.torch` and `lossplug.keras`. "
        "`lossplug list` prints this table with every parameter and default.\n\n"
        + "\n".join(rows) + "\n"
    )


for loss_spec in REGISTRY.values():
    with mkdocs_gen_files.open(f"losses/{loss_spec.name}.md", "w") as f:
        f.write(page(loss_spec))
    mkdocs_gen_files.set_edit_path(f"losses/{loss_spec.name}.md", "gen_loss_pages.py")
with mkdocs_gen_files.open("losses/index.md", "w") as f:
    f.write(index())
