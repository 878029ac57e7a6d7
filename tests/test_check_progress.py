"""``lossplug check`` says what it is doing while it runs (a cold run compiles kernels for ~40 s).

The plumbing is tested with stand-ins for the framework runs (fast, no compiler); the slow test in
tests/test_cli.py checks the progress lines of a real run.
"""

from __future__ import annotations

import io
import subprocess
import sys

from lossplug.tools import cli, parity


class _Case:
    def __init__(self, id):
        self.id = id


def test_run_all_reports_each_case_and_each_column(monkeypatch):
    cols = [parity.Column("torch f64", "torch", "float64"), parity.Column("torch fused", "torch", "float64"),
            parity.Column("keras/jax", "keras", "float32", note="jax is not installed")]
    monkeypatch.setattr(parity, "columns_to_run", lambda frameworks=None: cols)
    monkeypatch.setattr(parity, "_note_unavailable_fused_kernels", lambda cols: None)
    cases = [_Case("mse/default"), _Case("dice/labelmap")]

    def fake_run_torch(seed, dtype, fused=False, on_case=None):
        for i, case in enumerate(cases):
            on_case(i, len(cases), case)
        return {case.id: {} for case in cases}

    monkeypatch.setattr(parity, "run_torch", fake_run_torch)
    messages = []
    parity.run_all(progress=lambda message, final=True: messages.append((message.split("  [")[0], final)))
    assert messages == [
        ("torch f64: case 1/2 mse/default", False),
        ("torch f64: case 2/2 dice/labelmap", False),
        ("torch f64: 2 cases done", True),
        ("torch fused: compiling the derived kernels on first use (on a cold cache this takes most of the "
         "run; inductor caches them on disk for the next run)", True),
        ("torch fused: case 1/2 mse/default", False),
        ("torch fused: case 2/2 dice/labelmap", False),
        ("torch fused: 2 cases done", True),
    ]


def test_frameworks_select_columns_and_torch_fused_is_its_own_choice():
    def titles(frameworks):
        return [c.title for c in parity.columns_to_run(frameworks)]

    assert titles(["torch"]) == ["torch f64", "torch f32"]  # no compiling: quick
    assert titles(["torch-fused"]) == ["torch fused"]
    assert titles(["torch", "keras-jax"]) == ["torch f64", "torch f32", "keras/jax"]
    # by default no column compiles: torch fused is asked for by name
    assert titles(None) == ["torch f64", "torch f32", "keras/tensorflow", "keras/jax", "keras/torch"]


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_on_a_terminal_rewrites_the_counter_in_place():
    stream = _Stream(tty=True)
    progress = cli._Progress(stream)
    progress("torch f64: case 1/2 mse", final=False)
    progress("torch f64: case 2/2 dice", final=False)
    progress("torch f64: 2 cases done")
    progress("keras/jax: waiting", final=False)
    progress.clear()
    assert stream.getvalue() == (
        "\r\033[Ktorch f64: case 1/2 mse\r\033[Ktorch f64: case 2/2 dice\r\033[Ktorch f64: 2 cases done\n"
        "\r\033[Kkeras/jax: waiting\r\033[K"
    )


def test_progress_in_a_log_keeps_lines_and_prints_counters_at_most_every_few_seconds(monkeypatch):
    clock = iter([10.0, 11.0, 16.5, 17.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    stream = _Stream(tty=False)
    progress = cli._Progress(stream, every=5.0)
    progress("case 1/9", final=False)   # t=10: first counter, printed
    progress("case 2/9", final=False)   # t=11: within 5 s, dropped
    progress("case 3/9", final=False)   # t=16.5: printed
    progress("9 cases done")            # t=17: a line to keep, always printed
    assert stream.getvalue() == "case 1/9\ncase 3/9\n9 cases done\n"


def test_check_help_offers_quiet():
    out = subprocess.run([sys.executable, "-m", "lossplug.tools.cli", "check", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--quiet" in out.stdout
