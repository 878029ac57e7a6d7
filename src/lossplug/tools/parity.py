"""Cross-framework parity: every loss, in every installed framework, against the NumPy reference.

``lossplug check`` runs this. Each :class:`Case` is a loss with parameters and a recipe for small
random inputs, taken from the registry (each entry's cases marked ``check=True``, inputs by
``lossplug.tools.inputs``) and made channels-last (class axis -1, as NumPy and Keras expect);
torch gets the same arrays with the class axis moved to dim 1. The NumPy float64 result is the
reference; torch runs in float64 and float32 in this process (and, asked for, once more in float64
through the derived kernels, forced on for these small inputs), and Keras runs once per importable
backend, each in its own subprocess (``KERAS_BACKEND`` is fixed per process), in float32. Every
case is compared under ``reduction="mean"``, ``"sum"`` and ``"none"``.

This module imports no framework at import time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

REDUCTIONS = ("mean", "sum", "none")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# Error measure: max |got - ref| / max(1, max |ref|), per reduction; the worst of the three counts.
TOLERANCE = {"float64": 1e-9, "float32": 1e-5}


# --- the cases ----------------------------------------------------------------------------------


def _channels_last(loss: str, arrays):
    """Arrays made in torch's layout (class axis 1) with the class axis moved to the last one."""
    from lossplug._spec import REGISTRY

    y_pred, y_true = arrays
    if not REGISTRY[loss].has_class_axis or y_pred.ndim < 3:
        return y_pred, y_true
    return np.moveaxis(y_pred, 1, -1), (np.moveaxis(y_true, 1, -1) if y_true.ndim == y_pred.ndim else y_true)


@dataclass(frozen=True)
class Case:
    """One loss with parameters and a recipe for its (channels-last) random inputs."""

    loss: str
    label: str
    make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    params: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.loss}/{self.label}"


def _registry_cases() -> tuple[Case, ...]:
    """The rows of ``lossplug check``: every registry case marked ``check=True``."""
    from lossplug._spec import REGISTRY
    from lossplug.tools import inputs

    out = []
    for name, loss_spec in REGISTRY.items():
        for c in loss_spec.cases:
            if not c.check:
                continue
            kind, params = c.inputs or loss_spec.inputs, dict(c.params)

            def make(rng, name=name, kind=kind, params=params, shape=c.shape):
                return _channels_last(name, inputs.make(kind, params, shape, rng, axis=1))

            label = c.label or ", ".join(f"{k}={v}" for k, v in params.items()) or "default"
            out.append(Case(name, label, make, params))
    return tuple(out)


CASES = _registry_cases()


def case_inputs(case: Case, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The case's inputs; the same seed gives the same arrays in every process."""
    index = CASES.index(case)
    return case.make(np.random.default_rng([seed, index]))


def _channels_first(case: Case, y_pred, y_true):
    """The arrays as torch expects them: the class axis moved from last to dim 1."""
    from lossplug._spec import REGISTRY

    if not REGISTRY[case.loss].has_class_axis or y_pred.ndim < 3:
        return y_pred, y_true
    y_pred_cf = np.moveaxis(y_pred, -1, 1)
    if y_true.ndim == y_pred.ndim:
        y_true = np.moveaxis(y_true, -1, 1)
    return y_pred_cf, y_true


def reference(case: Case, seed: int, framework: str) -> dict[str, np.ndarray]:
    """The NumPy float64 values, per reduction, in the shape ``framework`` returns them.

    Keras's ``"none"`` is one value per sample: for the elementwise losses the NumPy per-element
    values averaged over the last axis.
    """
    import lossplug.numpy as reference_losses
    from lossplug._spec import REGISTRY

    y_pred, y_true = case_inputs(case, seed)
    fn = getattr(reference_losses, case.loss)
    out = {r: np.asarray(fn(y_pred, y_true, reduction=r, **case.params)) for r in REDUCTIONS}
    if framework == "keras":
        none = out["none"]
        if REGISTRY[case.loss].kind == "elementwise" and none.ndim > 1:
            out["none"] = none.mean(axis=-1)
        elif none.ndim == 0:  # Dice over the whole batch: Keras keeps it 1-D
            out["none"] = none.reshape(1)
    return out


# --- running a framework ------------------------------------------------------------------------


def run_torch(seed: int, dtype: str, fused: bool = False, on_case=None) -> dict[str, dict]:
    """Every case through ``lossplug.torch`` in ``dtype``: ``{case id: {reduction: values}}``.

    ``on_case(i, n, case)``, if given, is called before each of the ``n`` cases (progress).

    ``fused``: with ``y_pred`` requiring grad and the size threshold at 1, so that every loss runs
    its derived kernel (the formula compiled with its gradient; on real inputs only large tensors
    do) for "mean" and "sum".
    """
    import torch

    if fused:
        from lossplug.frameworks import crossover, derived

        sizes = derived.DERIVED_MIN_NUMEL, derived.NATIVE_UP_TO
        derived.DERIVED_MIN_NUMEL, derived.NATIVE_UP_TO = 1, {}
        try:
            with torch.enable_grad(), crossover.measured_crossover(False):
                return run_torch(seed, dtype, on_case=on_case)
        finally:
            derived.DERIVED_MIN_NUMEL, derived.NATIVE_UP_TO = sizes
    import lossplug.torch as torch_losses
    from lossplug._spec import REGISTRY

    torch_dtype = getattr(torch, dtype)
    results = {}
    for i, case in enumerate(CASES):
        if on_case is not None:
            on_case(i, len(CASES), case)
        y_pred, y_true = _channels_first(case, *case_inputs(case, seed))
        y_pred_t = torch.as_tensor(y_pred, dtype=torch_dtype).requires_grad_(torch.is_grad_enabled())
        labels = y_true.dtype.kind in "iu"
        y_true_t = torch.as_tensor(y_true, dtype=torch.long if labels else torch_dtype)
        cls = getattr(torch_losses, REGISTRY[case.loss].class_name)
        results[case.id] = _run_reductions(
            lambda r, cls=cls, case=case, a=y_pred_t, b=y_true_t: cls(reduction=r, **case.params)(a, b)
            .detach().double().numpy()
        )
    return results


def run_keras(seed: int) -> dict[str, dict]:
    """Every case through ``lossplug.keras`` on the current ``KERAS_BACKEND``, in float32."""
    import keras

    import lossplug.keras as keras_losses
    from lossplug._spec import REGISTRY

    results = {}
    for case in CASES:
        y_pred, y_true = case_inputs(case, seed)
        y_pred = y_pred.astype(np.float32)
        y_true = y_true.astype(np.int32 if y_true.dtype.kind in "iu" else np.float32)
        cls = getattr(keras_losses, REGISTRY[case.loss].class_name)
        results[case.id] = _run_reductions(
            lambda r, cls=cls, case=case, a=y_pred, b=y_true: np.asarray(
                keras.ops.convert_to_numpy(cls(reduction=r, **case.params)(b, a)), dtype=np.float64
            )
        )
    return results


def _run_reductions(compute) -> dict:
    out = {}
    for r in REDUCTIONS:
        try:
            out[r] = compute(r).tolist()
        except Exception as exc:  # reported in the table, not raised: one bad case must not hide others
            out[r] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# --- comparing ----------------------------------------------------------------------------------


@dataclass
class Column:
    """One framework run: its title, the dtype it computes in, and its results or why it has none."""

    title: str
    framework: str  # "torch" | "keras"
    dtype: str
    results: dict | None = None
    note: str | None = None  # why it was skipped or failed

    @property
    def failed(self) -> bool:
        return self.results is None and bool(self.note) and self.note.startswith("failed")


def compare(ref: dict, got: dict, dtype: str) -> tuple[bool, float | None, str]:
    """``(ok, worst error, detail)`` for one case in one framework across the reductions."""
    worst, details = 0.0, []
    for r in REDUCTIONS:
        value = got[r]
        if isinstance(value, dict):
            return False, None, f"{r}: {value['error']}"
        value, expected = np.asarray(value, dtype=np.float64), ref[r]
        if value.shape != expected.shape:
            return False, None, f"{r}: shape {value.shape}, reference {expected.shape}"
        if not np.all(np.isfinite(value)):
            return False, None, f"{r}: non-finite values"
        err = float(np.max(np.abs(value - expected), initial=0.0)) / max(
            1.0, float(np.max(np.abs(expected), initial=0.0))
        )
        if err > TOLERANCE[dtype]:
            details.append(f"{r}: error {err:.1e} > {TOLERANCE[dtype]:.0e}")
        worst = max(worst, err)
    return not details, worst, "; ".join(details)


# --- the whole check ----------------------------------------------------------------------------


def _importable(name: str) -> bool:
    """Whether ``name`` could be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _keras_worker_command(backend: str, seed: int, out_path: str):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "lossplug.tools.parity", "--keras-worker", str(seed), out_path]
    return cmd, env


def columns_to_run(frameworks: list[str] | None = None) -> list[Column]:
    """The framework columns, each either ready to run or skipped with a note."""
    # torch-fused only when asked for: it compiles a derived kernel per case (minutes on a cold cache)
    wanted = frameworks or ["torch"] + [f"keras-{b}" for b in KERAS_BACKENDS]
    cols = []
    note = None if _importable("torch") else 'torch is not installed: pip install "lossplug[torch]"'
    if "torch" in wanted:
        cols += [Column("torch f64", "torch", "float64", note=note),
                 Column("torch f32", "torch", "float32", note=note)]
    if "torch-fused" in wanted:  # its own choice: on a cold cache it compiles a kernel per case
        cols.append(Column("torch fused", "torch", "float64", note=note))
    for backend in KERAS_BACKENDS:
        if f"keras-{backend}" not in wanted:
            continue
        note = None
        if not _importable("keras"):
            note = 'keras is not installed: pip install "lossplug[keras]"'
        elif not _importable(backend):
            note = f'{backend} is not installed: pip install "lossplug[{backend}]"'
        cols.append(Column(f"keras/{backend}", "keras", "float32", note=note))
    return cols


def run_all(seed: int = 0, frameworks: list[str] | None = None, timeout: float = 300,
            progress=None) -> list[Column]:
    """Run every column: Keras backends in parallel subprocesses while torch runs here.

    ``progress(message, final)``, if given, is told what runs (``final=False``: a case counter that
    the next message replaces; ``True``: a line to keep); ``lossplug check`` prints it to stderr.
    """
    say = progress or (lambda message, final=True: None)
    start = time.perf_counter()

    def elapsed() -> str:
        return f"{time.perf_counter() - start:.0f} s"

    cols = columns_to_run(frameworks)
    workers = []
    with tempfile.TemporaryDirectory(prefix="lossplug-check-") as tmp:
        for col in cols:
            if col.framework == "keras" and col.note is None:
                backend = col.title.split("/")[1]
                path = os.path.join(tmp, f"{backend}.json")
                cmd, env = _keras_worker_command(backend, seed, path)
                proc = subprocess.Popen(
                    cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
                workers.append((col, proc, path))
        if workers:
            say(f"{', '.join(c.title for c, _, _ in workers)}: started, one subprocess each", True)
        for col in cols:
            if col.framework == "torch" and col.note is None:
                fused = col.title == "torch fused"
                if fused:
                    say("torch fused: compiling the derived kernels on first use (on a cold cache this "
                        "takes most of the run; inductor caches them on disk for the next run)", True)

                def on_case(i, n, case, title=col.title):
                    say(f"{title}: case {i + 1}/{n} {case.id}  [{elapsed()}]", False)

                col.results = run_torch(seed, col.dtype, fused=fused, on_case=on_case)
                say(f"{col.title}: {len(col.results)} cases done  [{elapsed()}]", True)
        _note_unavailable_fused_kernels(cols)
        for col, proc, path in workers:
            if proc.poll() is None:
                say(f"{col.title}: waiting for its subprocess  [{elapsed()}]", False)
            try:
                _, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                col.note = f"failed: no result within {timeout:g} s"
                continue
            if proc.returncode != 0 or not os.path.exists(path):
                last = (stderr or "").strip().splitlines()[-1:] or ["no output"]
                col.note = f"failed (exit {proc.returncode}): {last[0]}"
                continue
            with open(path) as f:
                col.results = json.load(f)
            say(f"{col.title}: {len(col.results)} cases done  [{elapsed()}]", True)
    return cols


def _note_unavailable_fused_kernels(cols: list[Column]) -> None:
    """Without a working compiler the fused column ran torch's kernels: say so, do not show it."""
    col = next((c for c in cols if c.title == "torch fused" and c.results is not None), None)
    if col is None:
        return
    from lossplug.frameworks import compiled as _compiled

    failures = _compiled.failures()
    if not _compiled.usable() or failures:
        col.results = None
        col.note = ("compiled kernels switched off" if not _compiled.usable()
                    else f"derived kernels could not be compiled ({failures[0]})")


def report(cols: list[Column], seed: int) -> tuple[str, bool]:
    """The parity table as text, and whether every run column matched the reference.

    Skipped columns (framework not installed) are left out of the table and named in a note;
    a column whose run failed stays in, marked FAILED, and fails the check.
    """
    shown = [c for c in cols if c.results is not None or c.failed]
    header = ["loss", "case", "NumPy mean"] + [c.title for c in shown]
    rows, failures = [], []
    for case in CASES:
        refs = {fw: reference(case, seed, fw) for fw in {c.framework for c in shown} | {"numpy"}}
        row = [case.loss, case.label, f"{float(refs['numpy']['mean']):.6g}"]
        for col in shown:
            if col.results is None:
                row.append("FAILED")
                continue
            ok, err, detail = compare(refs[col.framework], col.results[case.id], col.dtype)
            row.append(f"ok {err:.0e}" if ok else "MISMATCH")
            if not ok:
                failures.append(f"{case.id} in {col.title}: {detail}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [
        f"lossplug check: each loss against the NumPy float64 reference (seed {seed}); a cell is the",
        "worst error over reduction mean, sum and none, max|got - ref| / max(1, max|ref|);",
        "tolerance " + ", ".join(f"{k} {v:.0e}" for k, v in TOLERANCE.items()) + ".",
        "",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    notes = dict.fromkeys(
        f"{c.title.split()[0]}: {'' if c.failed else 'skipped, '}{c.note}" for c in cols if c.note
    )
    lines += [f"note: {n}" for n in notes]
    lines += [f"MISMATCH {line}" for line in failures]
    failed = [c for c in cols if c.failed]
    ran = [c for c in cols if c.results is not None]
    ok = not failures and not failed
    if not ok:
        lines.append(f"FAILED: {len(failures)} mismatch(es), {len(failed)} failed run(s)")
    elif ran:
        lines.append(f"OK: all {len(CASES)} cases match in " + ", ".join(c.title for c in ran))
    else:
        lines.append("OK, but nothing to compare: no framework besides NumPy is installed "
                     "(pip install 'lossplug[torch]', 'lossplug[jax]' or 'lossplug[tensorflow]')")
    return "\n".join(lines), ok


def _keras_worker(seed: int, out_path: str) -> None:
    results = run_keras(seed)
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--keras-worker":
        _keras_worker(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(
            "usage: python -m lossplug.tools.parity --keras-worker SEED OUT.json (run by `lossplug check`)"
        )
