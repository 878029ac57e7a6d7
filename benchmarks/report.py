"""The Markdown table, the targets check and the PNG chart written by ``python -m benchmarks``."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform


def machine(device: str) -> dict:
    """What the numbers were measured on: CPU, threads, device, library versions, load."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("torch", "monai", "keras", "tensorflow-cpu", "tensorflow", "jax", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
        "versions": versions,
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


# --- the targets of the performance issue ---------------------------------------------------------

SMALL = 100_000
"""Below this many elements the torch target is 1.1x (the per-call overhead), from it on 1.0x."""


def _worst(rows):
    worst = max(rows, key=lambda r: r["ratio"])
    return f"worst {worst['ratio']:.2f} ({worst['loss']}, {worst.get('shape', '')})"


def targets(rows: list[dict], key: str = "ratio") -> list[dict]:
    """Each target of the performance issues over the whole grid: the worst ratio and how many met.

    ``key`` names the ratio judged: ``"ratio"`` (best wall-clock time over the baseline's) or
    ``"cpu_ratio"`` (best process CPU time, steadier on a shared machine).
    """
    out = []
    rows = [dict(r, ratio=r.get(key, r.get("ratio"))) if r.get("section") != "memory" else r for r in rows]

    def add(target, sel, limit):
        if sel:
            met = sum(r["ratio"] <= limit for r in sel)
            out.append({"target": target, "measured": _worst(sel), "met": f"{met}/{len(sel)}"})

    torch_rows = [r for r in rows if r["section"] in ("elementwise", "class") and r["impl"] == "lossplug"]
    add(f"torch loss <= 1.0x native, every grid point of >= {SMALL:.0e} elements (checks on)",
        [r for r in torch_rows if r["numel"] >= SMALL], 1.0)
    add(f"torch loss <= 1.1x native below {SMALL:.0e} elements (per-call overhead)",
        [r for r in torch_rows if r["numel"] < SMALL], 1.1)
    add("Dice <= 0.7x MONAI at every C (label maps and masks)",
        [r for r in rows if r["section"] == "dice" and r["impl"] == "lossplug" and r["baseline"] == "native"],
        0.7)
    add("each loss beyond the nine <= 1.0x its peer (MONAI, torch.nn, the formula in torch ops), "
        f">= {SMALL:.0e} elements",
        [r for r in rows if r["section"] == "beyond the nine" and r["impl"] == "lossplug"
         and r["baseline"] == "native" and r["numel"] >= SMALL], 1.0)
    add("a user subclass (terms / score overridden) <= 0.8x the same formula composed in eager ops",
        [r for r in rows if r["section"] == "subclass" and r["impl"] == "lossplug"], 0.8)
    mem = [r for r in rows if r["section"] == "memory" and r["ratio"] is not None]
    for name, limit in (("sparse_categorical_ce", 1.2), ("dice (label map", 1.5)):
        sel = [r for r in mem if r["loss"].startswith(f"lossplug {name}")]
        add(f"peak memory of lossplug {name.rstrip(' (')} <= {limit}x F.cross_entropy's, every C",
            sel, limit)
    for backend in ("tensorflow", "jax"):
        keras_rows = [r for r in rows if r["section"] == f"keras-{backend}" and r["impl"] == "lossplug"]
        add(f"Keras ({backend}, XLA) <= 1.1x the built-in, every grid point", keras_rows, 1.1)
        add(f"Keras ({backend}, XLA): a loss beyond the nine <= 1.0x its built-in, >= {SMALL:.0e} elements",
            [r for r in keras_rows if r.get("beyond_the_nine") and r["numel"] >= SMALL], 1.0)
        add(f"(for comparison) Keras ({backend}, XLA) with value_checks(False) <= 1.1x the built-in",
            [r for r in rows if r["section"] == f"keras-{backend}" and r["impl"] == "lossplug (checks off)"],
            1.1)
    comp = [r for r in rows if r["section"] == "compile"]
    if comp:
        bad = [r["loss"] for r in comp if r["graph_breaks"] or r["abs_diff"] > 1e-5 or r["grad_diff"] > 1e-5]
        out.append({"target": "torch.compile: no graph breaks, eager value and gradient",
                    "measured": f"{len(comp)} losses, {sum(r['graph_breaks'] for r in comp)} graph breaks",
                    "met": "yes" if not bad else "no: " + ", ".join(bad)})
    add("training step with the lossplug loss <= 1.02x the native one",
        [r for r in rows if r["section"] == "train" and r["impl"] == "lossplug"], 1.02)
    return out


# --- Markdown -------------------------------------------------------------------------------------


def _fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def _timing_table(rows):
    return _table(
        ["loss", "shape", "implementation", "best ms", "median ms", "best CPU ms", "ratio (best)",
         "ratio (median)", "ratio (CPU)", "same value"],
        [[r["loss"], r["shape"], r["impl"], r["best_ms"], r["median_ms"], r.get("cpu_ms"), r["ratio"],
          r.get("median_ratio"), r.get("cpu_ratio"), r.get("same_value")] for r in rows],
    )


def judged_ratio(device: str) -> str:
    """The ratio the targets are judged on: CPU time on a (shared) CPU, wall clock on a GPU."""
    return "cpu_ratio" if device == "cpu" else "ratio"


def _by_classes(sizes) -> str:
    """The class-count rows of ``derived.NATIVE_UP_TO`` in words."""
    from lossplug.frameworks.derived import ByClasses

    def row(below, size):
        return f"{'C < ' + str(below) if below else 'more classes'}: {size or 'never'}"

    return "; ".join(
        f"{name} " + ", ".join(row(*r) for r in rule.rows) + f", segmentation input {rule.spatial}"
        for name, rule in sizes.items() if isinstance(rule, ByClasses)
    )


def markdown(rows: list[dict], info: dict, command: str, chart: str | None) -> str:
    from lossplug.frameworks.crossover import ABOVE, BELOW
    from lossplug.frameworks.derived import DERIVED_MIN_NUMEL, NATIVE_UP_TO, TRACED_MIN_NUMEL

    key = judged_ratio(info["device"])
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    device = info["device"] + (f" ({info['gpu']})" if "gpu" in info else "")
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {info['date']}. Regenerate with `python -m benchmarks` "
        "(a few minutes; `--quick` for the seconds-long smoke run that CI executes, `--cuda` to force "
        "the GPU, which is picked automatically when `torch.cuda.is_available()`).",
        "",
        f"**Machine:** {info['cpu']}, {info['cores']} cores, torch using {info['torch_threads']} "
        f"threads; device {device}; {info['platform']}, Python {info['python']}; {versions}. "
        f"Load average at the start: {info.get('load_average', '–')} (the machine was shared, "
        "so medians are noisier than best times)."
        + (" The table was run with `--threads 1`: on a shared 2-core machine every parallel "
           "region of a multi-threaded torch op can stall on a descheduled thread, which made "
           "2-thread timings vary by 10x from round to round." if info["torch_threads"] == 1
           and info["device"] == "cpu" else ""),
        "",
        'All torch timings are forward + backward (the gradient with respect to `y_pred`), float32, '
        'timed interleaved in one process: every round calls each candidate once. *Ratio* is the '
        "candidate's time over the baseline's (`native`: torch.nn.functional, MONAI for Dice, the "
        'Keras built-in for Keras) for the same inputs; below 1 is faster. `lossplug` is the loss as '
        'users call it: inputs that need a gradient run the kernel derived from the formula '
        + ('(on a GPU only where torch has no kernel of the loss) from ' if info["device"] == "cuda" else
           f'from {NATIVE_UP_TO["elementwise"]} elements on (elementwise losses), {NATIVE_UP_TO["bce"]} '
           f'(BCE on logits), for the class losses from a size set by the class count on the CPU '
           f'({_by_classes(NATIVE_UP_TO)}; `lossplug.frameworks.derived.NATIVE_UP_TO`; from '
           f'a {BELOW}th of these sizes to {ABOVE} times them the first call of each size band '
           'times both routes and keeps the faster: `lossplug.frameworks.crossover`), or ')
        + f'{TRACED_MIN_NUMEL} (losses torch has no kernel of; {DERIVED_MIN_NUMEL} for a subclass\'s '
        'formula) on: '
        '`torch.func.grad_and_value` of the formula and its reduction, with the value checks\' input '
        'ranges, traced with symbolic shapes and compiled by inductor on first use (called without '
        "dynamo; a subclass's through `torch.compile`); smaller ones torch's own "
        "kernel where one computes the formula, else the composed formula. `lossplug (kernels off)` "
        "runs inside `lossplug.torch.fused_kernels(False)`:"
        " torch's kernels or the composed formula (what runs where nothing can be compiled); `hand` "
        'is the composed formula a user would write; a subclass\'s baseline `eager` is the same '
        'subclass with kernels off (its formula composed in eager torch ops). A case runs 30 rounds '
        '(Keras: 40; fewer where they would take over 2 s, 4 s for segmentation, 6 s on Keras), '
        'and more, up to 2000, until it has spent 0.5 s, so a cheap call is the best of many. '
        'Each row gives the best '
        'and the median wall-clock time of its rounds and the best process CPU time (all threads); '
        'on a shared CPU the CPU time is the steadier figure, so the targets below are judged on it '
        '(on a GPU, on the best wall-clock time). Every target reports its worst grid point.',
        "",
        *(["On a GPU: [Benchmarks on a GPU](benchmarks-cuda.md) (`python -m benchmarks --cuda`, "
             "`scripts/gpu_checks.sh`).", ""] if info["device"] == "cpu" else []),
        "## Targets",
        "",
        _table([f"target (judged on {'CPU time' if key == 'cpu_ratio' else 'wall-clock time'})",
                "measured (ratio, best of N)", "met"],
               [[t["target"], t["measured"], t["met"]] for t in targets(rows, key)]),
        "",
    ]
    if chart:
        parts += [f"![lossplug time over the baseline's]({chart})", ""]
    sections = [
        ("elementwise", "Elementwise losses"),
        ("class", "Class losses and KL divergence"),
        ("dice", "Dice on label maps and masks (MONAI is the baseline)"),
        ("beyond the nine", "The losses beyond the nine against their peers"),
        ("subclass", "User subclasses (the same subclass in eager ops is the baseline)"),
        ("keras-tensorflow", "Keras on TensorFlow, under XLA (`jit_compile=True`)"),
        ("keras-jax", "Keras on JAX, under XLA (`jax.jit`)"),
    ]
    for key, title in sections:
        sec = [r for r in rows if r["section"] == key]
        if sec:
            parts += [f"## {title}", "", _timing_table(sec), ""]
            notes = sorted({f"{r['loss']}: {r['note']}" for r in sec if r.get("note")})
            parts += [f"- {n}" for n in notes] + ([""] if notes else [])
    mem = [r for r in rows if r["section"] == "memory"]
    if mem:
        parts += [
            "## Peak memory of forward + backward", "",
            f"Extra memory at the peak over what was allocated before the call, for logits of shape "
            f"{mem[0]['shape']} ({mem[0]['input_mb']:.0f} MiB); ratio to F.cross_entropy on the same "
            "logits. CPU: resident-set high-water mark (reset through /proc/self/clear_refs); CUDA: "
            "`torch.cuda.max_memory_allocated`.", "",
            _table(["loss", "peak MiB", "ratio to F.cross_entropy"],
                   [[r["loss"], r["peak_mb"], r["ratio"]] for r in mem]),
            "",
        ]
    comp = [r for r in rows if r["section"] == "compile"]
    if comp:
        parts += [
            "## torch.compile", "",
            f"`torch._dynamo.explain` graph breaks, and `torch.compile(fullgraph=True, "
            f"backend=\"{comp[0]['backend']}\")` against eager (value and gradient).", "",
            _table(["loss", "graph breaks", "|compiled - eager|", "max |grad difference|"],
                   [[r["loss"], r["graph_breaks"], f"{r['abs_diff']:.1e}", f"{r['grad_diff']:.1e}"]
                    for r in comp]),
            "",
        ]
    train = [r for r in rows if r["section"] == "train"]
    if train:
        parts += [
            "## Training step", "",
            "One optimiser step (zero_grad, forward, loss, backward, Adam), per step, with one model "
            "and optimiser for both losses; the native loss is torch's module (`nn.MSELoss`, "
            "`nn.CrossEntropyLoss`; MONAI's `DiceLoss` for segmentation), as a LightningModule holds "
            "it. At these small batches the derived kernels do not run: the difference is lossplug's "
            "per-call Python (shape and value checks), about 25-35 us per call on this CPU.", "",
            _table(["recipe", "loss", "best ms", "median ms", "best CPU ms", "ratio (best)",
                    "ratio (median)", "ratio (CPU)"],
                   [[r["loss"], r["impl"], r["best_ms"], r["median_ms"], r.get("cpu_ms"), r["ratio"],
                     r["median_ratio"], r.get("cpu_ratio")] for r in train]),
            "",
        ]
    errors = [r for r in rows if r["section"] == "error"]
    if errors:
        parts += ["## Not measured", ""] + [f"- {r['loss']}: {r['note']}" for r in errors] + [""]
    return "\n".join(parts)


# --- the chart ------------------------------------------------------------------------------------


def chart(rows: list[dict], path, key: str = "ratio") -> bool:
    """Bars of lossplug's time over the baseline's: torch at the target size, Dice per C, Keras."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    torch_rows = [r for r in rows if r["section"] in ("elementwise", "class")]
    if torch_rows:  # the worst grid point of each loss
        worst = {}
        for r in torch_rows:
            if r["impl"] == "lossplug" and r.get(key, 0) >= worst.get(r["loss"], {}).get(key, -1):
                worst[r["loss"]] = r
        torch_rows = [r for r in torch_rows if worst.get(r["loss"], {}).get("shape") == r["shape"]]
        panels.append(("torch vs torch.nn.functional (worst shape)", torch_rows,
                       ("lossplug", "lossplug (kernels off)")))
    dice = [r for r in rows if r["section"] == "dice"]
    if dice:
        panels.append(("Dice vs MONAI", dice, ("lossplug", "hand")))
    keras_rows = [r for r in rows if r["section"].startswith("keras-") and r.get("numel", 0) >= 4_000_000
                  and "x10" in r.get("shape", "x10")]
    if keras_rows:
        panels.append(("Keras vs built-in (XLA)", keras_rows, ("tensorflow", "jax")))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (title, sec, series) in zip(axes[0], panels, strict=True):
        if title.startswith("Keras"):
            labels = sorted({r["loss"] for r in sec}, key=[r["loss"] for r in sec].index)
            values = [[next((r[key] for r in sec if r["loss"] == lab and r["impl"] == "lossplug"
                             and r["section"] == f"keras-{s}"), float("nan")) for lab in labels]
                      for s in series]
        else:
            group = "shape" if title.startswith("Dice") else "loss"
            labels = sorted({r[group] for r in sec}, key=[r[group] for r in sec].index)
            values = [[next((r[key] for r in sec if r[group] == lab and r["impl"] == s), float("nan"))
                       for lab in labels] for s in series]
        width = 0.8 / len(series)
        for i, (s, vals) in enumerate(zip(series, values, strict=True)):
            ax.barh([j + i * width for j in range(len(labels))], vals, height=width, label=s)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))], labels, fontsize=8)
        ax.invert_yaxis()
        clock = "CPU" if key == "cpu_ratio" else "wall-clock"
        ax.set_xlabel(f"{clock} time / baseline's (best of N; < 1 is faster)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
