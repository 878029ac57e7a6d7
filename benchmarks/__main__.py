"""``python -m benchmarks [--quick] [--cuda | --cpu] [--out DIR] [--no-keras]``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERAS_BACKENDS = ("tensorflow", "jax")


def select_device(*, cuda: bool, cpu: bool, cuda_available: bool) -> str:
    """``--cuda`` forces the GPU (an error without one), ``--cpu`` the CPU; else CUDA when available."""
    if cuda and cpu:
        raise SystemExit("--cuda and --cpu exclude each other")
    if cuda and not cuda_available:
        raise SystemExit("--cuda: torch.cuda.is_available() is False on this machine")
    return "cuda" if cuda or (cuda_available and not cpu) else "cpu"


def keras_rows(backend: str, quick: bool, log, threads: int | None = None) -> list[dict]:
    """Run ``benchmarks.keras_cases`` in a subprocess with ``KERAS_BACKEND=backend``; its rows.

    ``threads`` limits XLA's (and TensorFlow's) intra-op threads as ``--threads`` limits torch's.
    """
    cmd = [sys.executable, "-m", "benchmarks.keras_cases"] + (["--quick"] if quick else [])
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if threads:
        eigen = "true" if threads > 1 else "false"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={eigen}"
                            f" intra_op_parallelism_threads={threads}").strip()
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        log(f"  keras-{backend} failed: {tail[0]}")
        return [{"section": "error", "loss": f"keras-{backend}", "note": tail[0]}]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds: seconds (CI)")
    parser.add_argument("--cuda", action="store_true", help="run the torch part on the GPU")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--out", type=Path, default=None,
                        help="where benchmarks.md/.png/.json go (benchmarks-cuda.* on a GPU; default: docs/, "
                             "or build/benchmarks-quick with --quick)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras subprocesses")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's, or 1 with --quick)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    from benchmarks import report
    from benchmarks.grid import all_torch_rows

    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    device = select_device(cuda=args.cuda, cpu=args.cpu, cuda_available=torch.cuda.is_available())
    out = args.out or (ROOT / ("build/benchmarks-quick" if args.quick else "docs"))
    out.mkdir(parents=True, exist_ok=True)
    switches = {"--quick": args.quick, "--cuda": args.cuda, "--cpu": args.cpu, "--no-keras": args.no_keras}
    flags = [flag for flag, on in switches.items() if on]
    flags += [f"--threads {args.threads}"] if args.threads else []
    command = " ".join(["python -m benchmarks", *flags])
    info = report.machine(device)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    stem = "benchmarks" if device == "cpu" else f"benchmarks-{device}"  # (the CPU's page stays)
    partial = out / f"{stem}.partial.json"

    def done(rows):  # what a run cut short has measured (a GPU lease ends, a job times out)
        partial.write_text(json.dumps({"machine": info, "rows": rows}) + "\n")

    start = time.perf_counter()
    log(f"torch on {device}")
    rows = all_torch_rows(quick=args.quick, device=device, log=log, done=done)
    if not args.no_keras:
        for backend in KERAS_BACKENDS:
            log(f"keras on {backend} (subprocess)")
            rows += keras_rows(backend, args.quick, log, threads)
    info["seconds"] = round(time.perf_counter() - start, 1)

    chart_name = f"{stem}.png"
    has_chart = report.chart(rows, out / chart_name, key=report.judged_ratio(device))
    text = report.markdown(rows, info, command, chart_name if has_chart else None)
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(text)
    log(f"wrote {out / (stem + '.md')} in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
