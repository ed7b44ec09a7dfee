"""How a simulated closed-loop benchmark is read (``simcluster.validate.simulate.Simulator``).

Independent truth: in the steady state of a closed loop of C clients every client has a request in
flight, so with short prompts and KV to spare the decode batch is C and TPOT is the cost of a decode
step of C sequences. The simulation also has a start-up wave and a drain (the requests still running
when the last one was sent, finishing while the batch empties), which a benchmark of ten prompts per
client holds one wave each of.
"""

from __future__ import annotations

import pytest

from simcluster.perf.interface import BatchShape
from simcluster.validate.mapping import map_row
from simcluster.validate.silicon import parse_row
from simcluster.validate.simulate import Simulator

from test_validate_silicon import _agg


@pytest.mark.parametrize("clients", [16, 128])
def test_steady_state_tpot_is_the_decode_step_at_full_batch(clients):
    isl, osl = 32, 256
    row = parse_row(_agg(id="w", isl=isl, osl=osl, batch_size=clients, precision="bf16", gemm_quant_mode=""), 2,
                    "synthetic.csv")
    setup = map_row(row)
    # InferenceX's length spread (outputs uniform in [0.8, 1] × osl): the drain's batch shrinks as its
    # requests finish one by one; a request cap below 3 C: the run is two waves and a bit
    sim = Simulator(range_ratio=0.8, max_requests=200)
    pred = sim.run(setup)
    _, plans = sim._plans(setup, sim.resolve_pools(setup))
    cost = plans[0].cost
    ctx = isl + 0.9 * osl / 2  # mean context over a request's decode steps (mean output 0.9 osl)
    full = cost.step(BatchShape(decode_seqs=clients, decode_context_tokens=int(clients * ctx))).latency_s * 1e3
    # a prompt of 32 tokens rides along in the decode steps: at most a few per cent on top (the
    # drain read as steady state gave 0.91 of the full-batch step at 128 clients)
    assert 0.98 * full <= pred.tpot_ms <= 1.06 * full, (pred.tpot_ms, full)


def test_a_short_run_still_has_a_steady_state():
    """However large C, the run holds a start-up wave, a steady state and a drain (at least 2 C +
    ``min_steady_requests`` requests), so the drain, whose batch shrinks, never stands for the steady state."""
    sim = Simulator(max_requests=100, min_steady_requests=32)
    for c in (1, 16, 64, 4096):
        n = sim.n_requests(c)
        assert n >= 2 * c + 32
        assert n <= max(3 * c, 2 * c + 32)
