"""Speed of the step-cost layer: table build time, step() and decode_run() calls per second.

Run: ``python benchmarks/bench_cost.py`` (one core; prints figures, asserts nothing).
The shapes mimic what the engine sends: pure decode steps with growing context, mixed steps with a
prefill chunk, and runs of 64 identical decode steps. Times are **CPU** time of this process (best
of several rounds), so other load on a shared machine inflates them less than wall time; the
reference line (constructing one 8-field StepTime) lets figures from different machines be compared.
"""

from __future__ import annotations

import time

import numpy as np

from simcluster.perf.interface import BatchShape, StepTime
from simcluster.perf.step_cost import CostSpec, build_step_cost

SPECS = [
    ("llama-3.1-8b, H100, tp=1", ("h100", "llama-3.1-8b", "bf16", "bf16", "bf16", "tp=1")),
    ("llama-3.1-70b, H200, tp=4,pp=2", ("h200", "llama-3.1-70b", "fp8", "fp8", "bf16", "tp=4,pp=2")),
    ("deepseek-r1, GB200, dp=8,ep=8", ("gb200", "deepseek-r1", "fp4", "fp8", "bf16", "dp=8,ep=8")),
    ("deepseek-r1, GB200, Helix kvp=32,ep=32",
     ("gb200", "deepseek-r1", "fp4", "fp4", "bf16", "kvp=32,tpa=1,ep=32,tpf=1")),
    ("llama-3.1-405b, GB200, Helix kvp=8,tpa=8", ("gb200", "llama-3.1-405b", "fp4", "fp4", "bf16", "kvp=8,tpa=8")),
    ("glm-5 (sparse attention), B200, tp=8", ("b200_sxm", "glm-5", "fp8_block", "fp8", "bf16", "tp=8")),
]


def _rate(fn, args_list, rounds: int = 5) -> float:
    """Calls per CPU second, best of ``rounds`` passes over ``args_list``."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for args in args_list:
            fn(*args)
        best = min(best, time.process_time() - t0)
    return len(args_list) / best


def main() -> None:
    rng = np.random.default_rng(0)
    batches = rng.integers(1, 256, 1000)
    ctx = rng.integers(100, 100_000, 1000)
    decode_shapes = [(BatchShape(decode_seqs=int(b), decode_context_tokens=int(b * c)),) for b, c in zip(batches, ctx)]
    mixed_shapes = [(BatchShape(decode_seqs=int(b), decode_context_tokens=int(b * c), prefill_seqs=1,
                                prefill_tokens=512, prefill_attn_pairs=512 * (2000 + 256.5),
                                prefill_past_tokens=2000),) for b, c in zip(batches, ctx)]
    runs = [(int(b), int(b * c), 64) for b, c in zip(batches[:200], ctx[:200])]
    ref = _rate(StepTime, [(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)] * 20000)
    print(f"reference: StepTime(8 floats) {1e6 / ref:.2f} µs per construction")
    print(f"{'spec':<42}{'build ms':>9}{'decode step':>13}{'mixed step':>12}{'decode_run(64)':>16}"
          f"{'steps/s in runs':>17}")
    for name, args in SPECS:
        spec = CostSpec(*args)
        build_ms = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            model = build_step_cost(spec)
            build_ms = min(build_ms, (time.process_time() - t0) * 1e3)
        dec = _rate(model.step, decode_shapes)
        mix = _rate(model.step, mixed_shapes)
        run = _rate(model.decode_run, runs)
        print(f"{name:<42}{build_ms:>9.1f}{1e6 / dec:>10.2f} µs{1e6 / mix:>9.2f} µs{1e6 / run:>13.1f} µs"
              f"{run * 64:>17,.0f}")


if __name__ == "__main__":
    main()
