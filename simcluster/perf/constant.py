"""A cost model where every step takes the same time: for queueing-theory checks and teaching.

With ``max_num_seqs = 1`` and one output token per request, an instance is an M/D/1 server.
"""

from __future__ import annotations

import numpy as np

from simcluster.perf.interface import BatchShape, StepTime


class ConstantStepCost:
    def __init__(self, step_s: float) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.step_s = float(step_s)

    def step(self, shape: BatchShape) -> StepTime:
        return StepTime(self.step_s, other_s=self.step_s)

    def decode_run(self, batch: int, context_tokens: int, n_steps: int) -> np.ndarray:
        return np.full(n_steps, self.step_s)

    def decode_run_affine(self, batch: int, context_tokens: int, n_steps: int):
        return (self.step_s, 0.0) if n_steps > 0 else None

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        t = self.step_s * n_steps
        return StepTime(t, other_s=t)

    def decode_run_work(self, batch: int, context_tokens: int, n_steps: int) -> tuple[float, float]:
        return 0.0, 0.0
