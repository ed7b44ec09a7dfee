"""Benchmark: calibrated op lookups per second (scalar and vectorised) and ``simcluster calibrate`` wall time.

    python benchmarks/bench_calibration.py            # lookups + a one-GPU calibrate
    python benchmarks/bench_calibration.py --full     # lookups + the full calibrate (minutes)
    python benchmarks/bench_calibration.py --no-calibrate

Figures, not assertions. The machine's speed is printed as a reference (a trivial Python call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from simcluster.catalog.gpus import GPUS
from simcluster.perf.calibration import CalibratedOps

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "calibration" / "aiconfigurator"


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def python_call_ns() -> float:
    def f(a, b, c):
        return a

    t = time.perf_counter()
    for i in range(200_000):
        f(i, 2, 3)
    return (time.perf_counter() - t) / 200_000 * 1e9


def bench_lookups() -> None:
    ops = CalibratedOps(GPUS["h100_sxm"], "vllm")
    rng = np.random.default_rng(0)
    m = rng.integers(1, 16384, 200_000)
    b = rng.integers(1, 256, 200_000)
    ctx = rng.integers(16, 131072, 200_000)
    nbytes = rng.uniform(1e3, 1e9, 200_000)
    # warm up: first use of a key builds its grid
    ops.gemm(100, 4096, 4096, "bf16")
    ops.attention_decode(8, 1000, 32, 8, 128, "bf16")
    ops.moe(100, 7168, 2048, 8, 256, 1, 8, "fp8_block")
    ops.collective("all_reduce", 1e6, 8, "nvlink")
    scalar = {
        "gemm": lambda n: [ops.gemm(int(m[i]), 4096, 4096, "bf16") for i in range(n)],
        "attention_decode": lambda n: [
            ops.attention_decode(int(b[i]), int(ctx[i]), 32, 8, 128, "bf16") for i in range(n)
        ],
        "moe": lambda n: [ops.moe(int(m[i]), 7168, 2048, 8, 256, 1, 8, "fp8_block") for i in range(n)],
        "collective": lambda n: [ops.collective("all_reduce", float(nbytes[i]), 8, "nvlink") for i in range(n)],
    }
    vector = {
        "gemm": lambda n: ops.gemm_many(m[:n], 4096, 4096, "bf16"),
        "attention_decode": lambda n: ops.attention_decode_many(b[:n], ctx[:n], 32, 8, 128, "bf16"),
        "moe": lambda n: ops.moe_many(m[:n], 7168, 2048, 8, 256, 1, 8, "fp8_block"),
        "collective": lambda n: ops.collective_many("all_reduce", nbytes[:n], 8, "nvlink"),
    }
    print(f"reference: one trivial Python call takes {python_call_ns():.0f} ns on this machine")
    print(f"{'op':18s} {'scalar lookups/s':>18s} {'vectorised lookups/s':>22s}")
    for name in scalar:
        s = _rate(scalar[name], 50_000)
        v = _rate(vector[name], 200_000)
        print(f"{name:18s} {s:18,.0f} {v:22,.0f}")


def bench_calibrate(full: bool) -> None:
    from simcluster.cli.main import main

    if not DATA.is_dir():
        print(f"calibrate: skipped ({DATA} not present)")
        return
    with tempfile.TemporaryDirectory() as out:
        args = ["calibrate", "--data", str(DATA), "-o", out]
        if not full:
            args += ["--gpu", "h100", "--framework", "vllm"]
        t = time.perf_counter()
        rc = _quiet(main, args)
        wall = time.perf_counter() - t
        size = sum(p.stat().st_size for p in Path(out).iterdir())
    scope = "all GPUs and frameworks" if full else "H100, vLLM (+ NCCL)"
    print(f"calibrate ({scope}): {wall:.1f} s wall, exit {rc}, artefacts {size / 1e6:.2f} MB")


def _quiet(main, args) -> int:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return main(args)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="time the full calibrate (all GPUs and frameworks)")
    p.add_argument("--no-calibrate", action="store_true", help="only time lookups")
    a = p.parse_args()
    bench_lookups()
    if not a.no_calibrate:
        bench_calibrate(a.full)
