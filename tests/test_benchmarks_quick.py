"""``python -m benchmarks --quick`` runs and writes its table, so the benchmark code cannot rot.

The speed figures themselves are not tested (the machine is shared); what is tested is that every
section runs, every candidate computes the same loss value as its baseline, and the files appear.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main, select_device  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("bench")
    try:
        assert main(["--quick", "--no-keras", "--cpu", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out, json.loads((out / "benchmarks.json").read_text())


def test_quick_run_writes_table_chart_and_rows(quick_run):
    out, result = quick_run
    text = (out / "benchmarks.md").read_text()
    assert text.startswith("# Benchmarks")
    assert "## Targets" in text and "**Machine:**" in text
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sections = {r["section"] for r in result["rows"]}
    assert {"elementwise", "class", "dice", "beyond the nine", "memory", "compile", "train"} <= sections
    assert result["machine"]["device"] == "cpu"


def test_quick_run_candidates_agree_on_the_value(quick_run):
    _, result = quick_run
    timed = [r for r in result["rows"] if "best_ms" in r and r["section"] != "train"]
    assert timed
    disagree = [(r["loss"], r["impl"]) for r in timed if r.get("same_value") is False]
    assert not disagree
    assert all(r["best_ms"] > 0 and r["median_ms"] >= r["best_ms"] for r in timed)


def test_quick_run_compile_rows_have_no_graph_breaks(quick_run):
    _, result = quick_run
    rows = [r for r in result["rows"] if r["section"] == "compile"]
    assert rows and all(r["graph_breaks"] == 0 and r["abs_diff"] < 1e-6 for r in rows)


def test_device_selection():
    assert select_device(cuda=False, cpu=False, cuda_available=True) == "cuda"
    assert select_device(cuda=False, cpu=False, cuda_available=False) == "cpu"
    assert select_device(cuda=False, cpu=True, cuda_available=True) == "cpu"
    assert select_device(cuda=True, cpu=False, cuda_available=True) == "cuda"
    with pytest.raises(SystemExit, match="cuda"):
        select_device(cuda=True, cpu=False, cuda_available=False)


def test_targets_are_judged_over_the_grid_by_their_worst_point():
    from benchmarks.report import targets

    big = {"section": "elementwise", "numel": 10**6, "shape": "1e6"}
    rows = [
        {**big, "loss": "mse", "impl": "lossplug", "ratio": 0.8},
        {**big, "loss": "mae", "impl": "lossplug", "ratio": 1.3},
        {**big, "loss": "mae", "impl": "native", "ratio": 1.0},
        {"section": "class", "loss": "sparse", "impl": "lossplug", "ratio": 1.05, "numel": 10**4,
         "shape": "x"},
        {"section": "memory", "loss": "lossplug dice (label map)", "ratio": 1.6, "shape": "8x2"},
        {"section": "memory", "loss": "lossplug dice (label map)", "ratio": 1.1, "shape": "8x4"},
    ]
    judged = {t["target"].split(",")[0].split(" below")[0]: t for t in targets(rows)}
    big = judged["torch loss <= 1.0x native"]
    assert big["met"] == "1/2" and big["measured"] == "worst 1.30 (mae, 1e6)"
    assert judged["torch loss <= 1.1x native"]["met"] == "1/1"
    mem = next(t for t in targets(rows) if t["target"].startswith("peak memory of lossplug dice"))
    assert mem["met"] == "1/2" and "1.60" in mem["measured"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_keras_quick_subprocess(backend):
    """The Keras part runs in its own process per backend and reports matching values."""
    from benchmarks.__main__ import keras_rows

    rows = keras_rows(backend, quick=True, log=print)
    assert rows and all(r["section"] == f"keras-{backend}" for r in rows)
    assert all(r["same_value"] for r in rows)
