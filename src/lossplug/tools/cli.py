"""The ``lossplug`` command: list, show, check and plot the losses.

``lossplug list`` prints the registry; ``lossplug show NAME`` one loss in full; ``lossplug check``
runs every loss in every installed framework against the NumPy reference (exit 1 on a mismatch);
``lossplug plot NAME... --out FILE.png`` draws loss and gradient curves. Importing this module
imports no framework; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import ast
import importlib.resources
import shutil
import sys
import textwrap
import time

from lossplug import __version__
from lossplug._optional import MissingDependency
from lossplug._spec import REGISTRY, LossParameterError, LossSpec, spec


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


# --- helpers ------------------------------------------------------------------------------------


def _loss(name: str) -> LossSpec:
    try:
        return spec(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _table(header: list[str], rows: list[list[str]], wrap_last: bool = False) -> str:
    """Left-aligned columns; the last one wrapped to the terminal width when ``wrap_last``."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header) - 1)]
    lead = sum(widths) + 2 * len(widths)
    room = max(30, shutil.get_terminal_size((110, 24)).columns - lead - 1)
    lines = []
    for i, row in enumerate([header] + rows):
        last = textwrap.wrap(row[-1], room) if wrap_last and row[-1] else [row[-1]]
        cells = "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True))
        lines.append(f"{cells}  {last[0]}".rstrip())
        lines += [" " * lead + more for more in last[1:]]
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(lines)


def _yaml_text(name: str) -> str | None:
    """The Hydra config file shipped in the package for ``name``, if the package has one."""
    try:
        resource = importlib.resources.files("lossplug") / "conf" / "loss" / f"{name}.yaml"
        return resource.read_text() if resource.is_file() else None
    except (FileNotFoundError, ModuleNotFoundError):
        return None


def _hydra(value) -> str:
    """A value as written in a Hydra command-line override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _plain_formula(name: str) -> str:
    """The one-line plain-text formula from the NumPy function's docstring."""
    import lossplug.numpy as reference

    return (getattr(reference, name).__doc__ or "").strip().splitlines()[0]


def _parse_loss_arg(text: str) -> tuple[str, dict]:
    """``huber`` or ``huber:delta=0.5,reduction='sum'`` into a name and parameters."""
    name, _, rest = text.partition(":")
    _loss(name)
    params = {}
    for item in _split_top_level(rest) if rest else []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"bad parameter {item!r} in {text!r}; write NAME:key=value,key=value")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()  # a bare word such as sample or softmax
    try:
        spec(name).validate(params)
    except LossParameterError as exc:
        raise UsageError(str(exc)) from None
    return name, params


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets (class_weights=[1,2,3])."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


class _Progress:
    """``lossplug check``'s progress on stderr: lines to keep, and a case counter that a terminal
    rewrites in place (elsewhere, e.g. in a CI log, printed at most every 5 s)."""

    def __init__(self, stream, every: float = 5.0):
        self.stream, self.every = stream, every
        self.tty = stream.isatty()
        self.last, self.pending = 0.0, False

    def __call__(self, message: str, final: bool = True) -> None:
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r\033[K" + message + ("\n" if final else ""))
            self.pending = not final
        elif final or now - self.last >= self.every:
            self.stream.write(message + "\n")
            self.last = now
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.pending:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- the commands -------------------------------------------------------------------------------


def cmd_list(args) -> int:
    rows = []
    for s in REGISTRY.values():
        params = ", ".join(f"{p.name}={p.default!r}" for p in s.params)
        rows.append([s.name, s.class_name, f"numpy.{s.name}", params])
    print(_table(["name", "torch / keras class", "numpy function", "parameters (defaults)"], rows,
                 wrap_last=True))
    print("\nlossplug show NAME: formula, parameters and the YAML for one loss")
    return 0


def cmd_show(args) -> int:
    s = _loss(args.name)
    print(f"{s.name}: {s.summary}")
    print()
    print(f"formula    {_plain_formula(s.name)}")
    print(f"LaTeX      {s.math}")
    print()
    print(f"NumPy      lossplug.numpy.{s.name}(y_pred, y_true, **params)")
    print(f"torch      lossplug.torch.{s.class_name}(**params)(y_pred, y_true)     class axis dim 1")
    print(f"Keras      lossplug.keras.{s.class_name}(**params)(y_true, y_pred)     class axis -1")
    print(f"any        lossplug.get({s.name!r}, framework='numpy'|'torch'|'keras', **params)")
    print()
    rows = [[p.name, repr(p.default), p.doc] for p in s.params]
    print(_table(["parameter", "default", "meaning"], rows, wrap_last=True))
    print()
    yaml = _yaml_text(s.name)
    print(f"Hydra: put `defaults: [loss: {s.name}]` in your config, then")
    print("       hydra.utils.instantiate(cfg.loss, framework='torch')   # or 'keras'")
    example = next((p for p in s.params if p.name != "reduction"), s.params[0])
    print(f"       override on the command line: loss={s.name} loss.{example.name}={_hydra(example.default)}")
    if yaml is not None:
        print(f"\nthe shipped config (lossplug/conf/loss/{s.name}.yaml):\n")
        print(textwrap.indent(yaml.rstrip(), "    "))
    return 0


def cmd_check(args) -> int:
    from lossplug.tools import parity as _parity

    if args.float32_tol is not None:
        _parity.TOLERANCE["float32"] = args.float32_tol
    if args.float64_tol is not None:
        _parity.TOLERANCE["float64"] = args.float64_tol
    start = time.perf_counter()
    progress = None if args.quiet else _Progress(sys.stderr)
    columns = _parity.run_all(seed=args.seed, frameworks=args.frameworks, progress=progress)
    if progress is not None:
        progress.clear()
    text, ok = _parity.report(columns, args.seed)
    print(text)
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1


def cmd_plot(args) -> int:
    if not args.out.lower().endswith(".png"):
        raise UsageError(f"--out must name a .png file, got {args.out!r}")
    losses = [_parse_loss_arg(text) for text in args.names]
    from lossplug.tools import plots as _plots

    try:
        _plots.plot(losses, args.out, dpi=args.dpi, title=args.title)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    w, h = (round(x * args.dpi) for x in _plots.FIGSIZE)
    print(f"wrote {args.out} ({w} x {h} px): " + ", ".join(_plots.label(n, p) for n, p in losses))
    return 0


def cmd_port(args) -> int:
    from lossplug.tools import port

    try:
        return port.cli(args.expression, args.to, seed=args.seed, num_classes=args.num_classes)
    except ValueError as exc:  # not a ported call, or a setting lossplug cannot reproduce
        raise UsageError(str(exc)) from None


# --- the parser ---------------------------------------------------------------------------------

# "torch": the float64 and float32 columns; "torch-fused": the compiled kernels' column
_FRAMEWORK_CHOICES = ("torch", "torch-fused", "keras-tensorflow", "keras-jax", "keras-torch")


def _dpi(text: str) -> int:
    value = int(text)
    if not 20 <= value <= 600:
        raise argparse.ArgumentTypeError("must be between 20 and 600")
    return value


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(REGISTRY)
    parser = argparse.ArgumentParser(
        prog="lossplug",
        description="Deep-learning losses, written once: the same number in NumPy, PyTorch and Keras.",
        epilog="After installing, run `lossplug check` to see every loss match in your frameworks.",
    )
    parser.add_argument("--version", action="version", version=f"lossplug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="a table of the losses: name, classes, parameters and defaults",
                       description="A table of the losses: name, classes, parameters and defaults.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one loss: formula, parameters, usage and its Hydra YAML",
                       description="One loss: formula, parameters and defaults, usage, its Hydra YAML.")
    p.add_argument("name", metavar="NAME", help=f"a loss name: {names}")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "check", help="run every loss in every installed framework against the NumPy reference",
        description=(
            "Run every loss on random inputs in torch (float64 and float32, and float64 through "
            "the derived kernels with --frameworks torch-fused) and in Keras on each installed backend "
            "(tensorflow, jax, torch; one subprocess each, float32), compare "
            "reduction mean, sum and none with the NumPy float64 reference and print a table. "
            "Frameworks that are not installed are skipped with a note. Exit status 1 on a mismatch."
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--frameworks", nargs="+", choices=_FRAMEWORK_CHOICES, metavar="FW",
                   help=f"only these: {', '.join(_FRAMEWORK_CHOICES)} (default: all installed)")
    p.add_argument("--float32-tol", type=float, metavar="TOL",
                   help="tolerance of the float32 runs (default 1e-5)")
    p.add_argument("--float64-tol", type=float, metavar="TOL",
                   help="tolerance of the torch float64 run (default 1e-9)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr (the first run compiles kernels: ~40 s)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "plot", help="loss and gradient curves against the error, as a PNG",
        description=(
            "Plot each named loss and its gradient against the error e (see the docs of each loss "
            "for what e is). NAME may carry parameters: huber:delta=0.5 or "
            "weighted_bce:pos_weight=3,neg_weight=0.5."
        ),
    )
    p.add_argument("names", nargs="+", metavar="NAME", help=f"loss names: {names}")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    p.add_argument("--dpi", type=_dpi, default=100,
                   help="resolution; the figure is 10 x 4 inches (default 100: 1000 x 400 px)")
    p.add_argument("--title", help="a title above both panels")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "port", help="the lossplug loss that gives a torch.nn, Keras or MONAI loss's number",
        description=(
            'Port a source loss, written as a Python call ("torch.nn.CrossEntropyLoss(label_smoothing=0.1)", '
            '"keras.losses.Tversky(alpha=0.7, beta=0.3)", "monai.losses.DiceLoss(softmax=True)"): print the '
            "equivalent lossplug code, its Hydra YAML (an entry of the loss group) and both numbers on a "
            "random batch. Only the call of a ported class with literal arguments (and torch.tensor([...])) "
            "is read; only the source's module is imported. Exit status 1 if the numbers differ."
        ),
    )
    p.add_argument("expression", metavar="EXPR", help="the source loss, as a Python call")
    p.add_argument("--to", required=True, choices=("numpy", "torch", "keras"), help="the target framework")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batch (default 0)")
    p.add_argument("--num-classes", type=int, metavar="C",
                   help="the number of classes, for MONAI's FocalLoss(use_softmax=True)")
    p.set_defaults(func=cmd_port)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"lossplug {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MissingDependency as exc:  # says which extra to install
        print(f"lossplug {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
