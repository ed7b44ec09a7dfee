"""Properties of the step cost that must hold for every configuration (hypothesis)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simcluster.perf.composition import Composer
from simcluster.perf.interface import BatchShape
from simcluster.perf.moe import expected_experts_touched, load_imbalance
from simcluster.perf.step_cost import CostSpec, build_step_cost

FAST = settings(max_examples=40, deadline=None)


@functools.lru_cache(maxsize=None)
def composer(model: str, layout: str, gpu: str = "gb200", fmt: str = "fp4") -> Composer:
    return Composer(CostSpec(gpu, model, fmt, fmt, "bf16", layout))


@functools.lru_cache(maxsize=None)
def step_model(model: str, layout: str, gpu: str = "gb200", **kw):
    return build_step_cost(CostSpec(gpu, model, "fp8", "fp8", "bf16", layout, **kw))


def decode(batch: int, context: int) -> BatchShape:
    return BatchShape(decode_seqs=batch, decode_context_tokens=batch * context)


def prefill(seqs: int, tokens: int, past: int = 0) -> BatchShape:
    return BatchShape(prefill_tokens=seqs * tokens, prefill_seqs=seqs,
                      prefill_attn_pairs=seqs * tokens * (past + (tokens + 1) / 2), prefill_past_tokens=seqs * past)


def kv_read_bytes(c: Composer, shape: BatchShape) -> float:
    return c.describe(shape)["layers"][0]["kv_read_bytes"]


# ------------------------------------------------------------------ KV reads
@FAST
@given(tpa=st.sampled_from([1, 2, 4, 8]), kvp=st.sampled_from([1, 2, 4]), batch=st.integers(1, 64),
       context=st.integers(1, 2_000_000))
def test_helix_kv_read_halves_when_kvp_doubles(tpa, kvp, batch, context):
    shape = decode(batch, context)
    one = kv_read_bytes(composer("llama-3.1-405b", f"kvp={kvp},tpa={tpa}"), shape)
    two = kv_read_bytes(composer("llama-3.1-405b", f"kvp={2 * kvp},tpa={tpa}"), shape)
    assert two == pytest.approx(one / 2, rel=1e-12)


@FAST
@given(kvp=st.sampled_from([1, 2, 4, 8, 16, 32]), batch=st.integers(1, 32), context=st.integers(1, 2_000_000))
def test_mla_kv_read_halves_when_kvp_doubles(kvp, batch, context):
    shape = decode(batch, context)
    one = kv_read_bytes(composer("deepseek-r1", f"kvp={kvp},tpa=1,ep=8,tpf={kvp // 8 or 1}"
                                 if kvp >= 8 else f"kvp={kvp},tpa=1"), shape)
    two = kv_read_bytes(composer("deepseek-r1", f"kvp={2 * kvp},tpa=1,ep=8,tpf={2 * kvp // 8}"
                                 if 2 * kvp >= 8 else f"kvp={2 * kvp},tpa=1"), shape)
    assert two == pytest.approx(one / 2, rel=1e-12)


@FAST
@given(tp=st.sampled_from([8, 16, 32, 64]), batch=st.integers(1, 64), context=st.integers(1, 2_000_000))
def test_kv_read_is_flat_in_tp_beyond_the_kv_heads(tp, batch, context):
    """Llama-3.1-405B has 8 KV heads: TP beyond 8 duplicates KV instead of splitting it."""
    shape = decode(batch, context)
    assert kv_read_bytes(composer("llama-3.1-405b", f"tp={tp}"), shape) == pytest.approx(
        kv_read_bytes(composer("llama-3.1-405b", "tp=8"), shape), rel=1e-12)


@FAST
@given(batch=st.integers(1, 64), c1=st.integers(1, 4_000_000), c2=st.integers(1, 4_000_000),
       layout=st.sampled_from(["kvp=4,tpa=8", "kvp=8,tpa=8", "kvp=2,tpa=4,tpf=8"]))
def test_a2a_bytes_do_not_depend_on_context(batch, c1, c2, layout):
    c = composer("llama-3.1-405b", layout)
    a, b = c.describe(decode(batch, c1)), c.describe(decode(batch, c2))
    assert a["layers"][0]["a2a_send_bytes"] == b["layers"][0]["a2a_send_bytes"] > 0


# ------------------------------------------------------------------ monotonicity (the table lookups)
LAYOUTS = [
    ("llama-3.1-8b", "tp=1", {}), ("llama-3.1-70b", "tp=4,pp=2", {}), ("llama-3.1-405b", "kvp=8,tpa=8", {}),
    ("llama-3.1-405b", "kvp=8,tpa=8", {"exchange_model": "per_request"}),
    ("deepseek-r1", "dp=8,ep=8", {}), ("deepseek-r1", "kvp=16,tpa=1,ep=16,tpf=1", {}),
    ("gpt-oss-120b", "tp=2,ep=2", {"kv_eviction_budget": 2048}),
]


@pytest.mark.parametrize("model, layout, kw", LAYOUTS)
@FAST
@given(b1=st.integers(1, 3000), b2=st.integers(1, 3000), c=st.integers(1, 3_000_000))
def test_decode_latency_is_monotone_in_batch(model, layout, kw, b1, b2, c):
    m = step_model(model, layout, **kw)
    lo, hi = sorted((b1, b2))
    assert m.step(decode(hi, c)).latency_s >= m.step(decode(lo, c)).latency_s * (1 - 1e-12)


@pytest.mark.parametrize("model, layout, kw", LAYOUTS)
@FAST
@given(b=st.integers(1, 3000), c1=st.integers(1, 40_000_000), c2=st.integers(1, 40_000_000))
def test_decode_latency_is_monotone_in_context(model, layout, kw, b, c1, c2):
    m = step_model(model, layout, **kw)
    lo, hi = sorted((c1, c2))
    assert m.step(decode(b, hi)).latency_s >= m.step(decode(b, lo)).latency_s * (1 - 1e-12)


@pytest.mark.parametrize("model, layout, kw", LAYOUTS)
@FAST
@given(seqs=st.integers(1, 8), t1=st.integers(1, 200_000), t2=st.integers(1, 200_000), past=st.integers(0, 100_000))
def test_prefill_latency_is_monotone_in_tokens(model, layout, kw, seqs, t1, t2, past):
    m = step_model(model, layout, **kw)
    lo, hi = sorted((t1, t2))
    assert m.step(prefill(seqs, hi, past)).latency_s >= m.step(prefill(seqs, lo, past)).latency_s * (1 - 1e-12)


# ------------------------------------------------------------------ the table against the exact model
@pytest.mark.parametrize("model, layout, kw", LAYOUTS)
@FAST
@given(d=st.integers(0, 5000), c=st.integers(1, 3_000_000), s=st.integers(0, 4), p=st.integers(1, 40_000),
       past=st.integers(0, 200_000))
def test_table_lookup_matches_exact_evaluation(model, layout, kw, d, c, s, p, past):
    """Interpolated step latency within 2 % of the exact op-by-op evaluation (roofline)."""
    assume(d or s)
    m = step_model(model, layout, **kw)
    shape = BatchShape(decode_seqs=d, decode_context_tokens=d * c, prefill_seqs=s, prefill_tokens=s * p,
                       prefill_attn_pairs=s * p * (past + (p + 1) / 2), prefill_past_tokens=s * past)
    fast, exact = m.step(shape), m.describe(shape)
    assert fast.latency_s == pytest.approx(exact["latency_s"], rel=0.02)
    assert fast.flops == pytest.approx(exact["flops"], rel=0.02)
    assert fast.hbm_bytes == pytest.approx(exact["hbm_bytes"], rel=0.02)
    parts = fast.weight_read_s + fast.kv_read_s + fast.compute_s + fast.comm_s + fast.other_s
    assert parts == pytest.approx(fast.latency_s, rel=1e-9)


@pytest.mark.parametrize("model, layout, kw", LAYOUTS)
@FAST
@given(b=st.integers(1, 2000), c=st.integers(1, 2_000_000), n=st.integers(1, 300))
def test_decode_run_agrees_with_single_steps(model, layout, kw, b, c, n):
    m = step_model(model, layout, **kw)
    run = m.decode_run(b, b * c, n)
    assert run.shape == (n,)
    for i in (0, n // 2, n - 1):
        assert run[i] == pytest.approx(m.step(decode(b, c + i)).latency_s, rel=1e-6)
    totals = m.decode_run_totals(b, b * c, n)
    assert totals.latency_s == pytest.approx(run.sum(), rel=1e-9)
    assert totals.flops == pytest.approx(sum(m.step(decode(b, c + i)).flops for i in range(n)), rel=1e-6)


def test_empty_step_costs_nothing():
    m = step_model("llama-3.1-8b", "tp=1")
    assert m.step(BatchShape()).latency_s == 0.0
    assert m.decode_run(4, 400, 0).shape == (0,)


def test_eviction_budget_caps_the_kv_read():
    """H2O / SnapKV / StreamingLLM: with a 4096-token budget a 1M-token sequence reads 4096 tokens of KV."""
    budget = Composer(CostSpec("gb200", "llama-3.1-405b", "fp4", "fp4", "bf16", "tp=8",
                                                 kv_eviction_budget=4096))
    full = composer("llama-3.1-405b", "tp=8")
    assert kv_read_bytes(budget, decode(8, 1_000_000)) == pytest.approx(kv_read_bytes(full, decode(8, 4096)))
    # SnapKV-style selection happens after prefill: prefill FLOPs are unchanged
    assert budget.describe(prefill(1, 8192))["flops"] == full.describe(prefill(1, 8192))["flops"]


# ------------------------------------------------------------------ MoE
@settings(max_examples=100, deadline=None)
@given(tokens=st.integers(1, 5000), experts=st.sampled_from([8, 64, 128, 256]), k=st.sampled_from([1, 2, 4, 8]),
       ep=st.sampled_from([1, 2, 8, 32]))
def test_expected_experts_touched_is_bounded(tokens, experts, k, ep):
    assume(experts % ep == 0 and k <= experts)
    e_loc = experts / ep
    touched = expected_experts_touched(tokens, experts, k, ep)
    assert k / ep - 1e-9 <= touched <= min(e_loc, tokens * k / ep) + 1e-9


@pytest.mark.parametrize("tokens, experts, k, ep", [(1, 256, 8, 8), (16, 256, 8, 8), (64, 256, 8, 32),
                                                     (200, 128, 4, 4), (7, 64, 2, 1)])
def test_expected_experts_touched_matches_monte_carlo(tokens, experts, k, ep):
    rng = np.random.default_rng(12345)
    trials = 4000
    e_loc = experts // ep
    counts = np.empty(trials)
    for t in range(trials):
        chosen = np.argsort(rng.random((tokens, experts)), axis=1)[:, :k]  # k distinct experts per token
        counts[t] = np.unique(chosen[chosen < e_loc]).size  # rank 0 holds experts [0, e_loc)
    expected = expected_experts_touched(tokens, experts, k, ep)
    assert counts.mean() == pytest.approx(expected, abs=4 * counts.std() / np.sqrt(trials) + 1e-9)


def test_load_imbalance_shrinks_with_more_tokens():
    assert load_imbalance(0, 8, 8) == 1.0
    assert load_imbalance(10**6, 8, 1) == 1.0
    factors = [load_imbalance(t, 8, 8) for t in (1, 16, 256, 4096, 65536)]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert factors[-1] < 1.02


class ScalarOps:
    """An op-cost model with only the protocol methods, called point by point (like measured tables)."""

    vectorised = False

    def __init__(self, gpu):
        from simcluster.perf.roofline import RooflineOps

        self._roof = RooflineOps(gpu)
        self.launch_overhead_s = self._roof.launch_overhead_s
        self.calls = 0

    def gemm(self, m, n, k, fmt):
        assert np.ndim(m) == 0
        self.calls += 1
        return float(self._roof.gemm(m, n, k, fmt))

    def attention_decode(self, batch, context_tokens, q_heads, kv_heads, head_dim, kv_fmt):
        assert np.ndim(batch) == 0
        return float(self._roof.attention_decode(batch, context_tokens, q_heads, kv_heads, head_dim, kv_fmt))

    def attention_prefill(self, batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim, kv_fmt):
        return float(self._roof.attention_prefill(batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim,
                                                  kv_fmt))

    def collective(self, op, bytes_per_gpu, n_gpus, link):
        if op == "p2p":  # like the measured tables: no point-to-point data
            raise ValueError("p2p is not measured")
        return float(self._roof.collective(op, bytes_per_gpu, n_gpus, link))


@pytest.mark.parametrize("model, layout", [("llama-3.1-70b", "tp=4,pp=2"), ("deepseek-r1", "dp=8,ep=8"),
                                           ("llama-3.1-405b", "kvp=4,tpa=8")])
def test_an_op_cost_model_plugs_in_through_ops(model, layout):
    """A scalar op-cost model gets coarse tables; with the roofline's own numbers it agrees with the roofline."""
    from simcluster.catalog.gpus import get_gpu

    ops = ScalarOps(get_gpu("gb200"))
    plugged = build_step_cost(CostSpec("gb200", model, "fp8", "fp8", "bf16", layout, ops=ops))
    roof = build_step_cost(CostSpec("gb200", model, "fp8", "fp8", "bf16", layout))
    assert ops.calls > 0
    for shape in (decode(1, 1000), decode(37, 70_000), decode(300, 3000), prefill(2, 3000, 500)):
        assert plugged.step(shape).latency_s == pytest.approx(roof.step(shape).latency_s, rel=0.02)


@pytest.mark.parametrize("gpu, model, layout", [("h100", "llama-3.1-70b", "tp=4,pp=2"),
                                                ("h200", "deepseek-r1", "dp=8,ep=8")])
def test_calibrated_tables_plug_in_and_the_table_matches_their_exact_evaluation(gpu, model, layout):
    calibration = pytest.importorskip("simcluster.perf.calibration.ops")
    try:
        ops = calibration.CalibratedOps(gpu, framework="vllm")
    except Exception as exc:  # the calibration artefacts are someone else's deliverable
        pytest.skip(f"calibrated op tables unavailable: {exc}")
    m = build_step_cost(CostSpec(gpu, model, "fp8", "fp8", "bf16", layout, ops=ops))
    for shape in (decode(1, 1000), decode(48, 7000), prefill(1, 4096), prefill(2, 1024, 3000)):
        fast, exact = m.step(shape), m.describe(shape)
        assert fast.latency_s > 0
        assert fast.latency_s == pytest.approx(exact["latency_s"], rel=0.02)


def test_fast_decode_runs_equal_step_by_step_evaluation():
    """decode_run's closed form (a run inside one table cell is affine in the step index) gives the
    latencies that evaluating every step through the table gives."""
    import numpy as np

    from simcluster.perf.step_cost import CostSpec, build_step_cost

    rng = np.random.default_rng(7)
    for model, layout in (("llama-3.1-70b", "tp=2"), ("gpt-oss-120b", "tp=4"), ("deepseek-r1", "dp=8,ep=8")):
        c = build_step_cost(CostSpec("h200_sxm", model, "fp8", "fp8", "bf16", layout))
        for _ in range(200):
            b = int(rng.integers(1, 300))
            ctx = int(b * rng.integers(1, 100_000))
            n = int(rng.integers(1, 200))
            da, tok, kinds = c._run_parts(b, ctx, n)
            ref = np.full(n, tok[0] + c._overhead)
            for layers, _, busy in kinds:
                ref += layers * (busy + c._core_ovh)
            assert np.allclose(c.decode_run(b, ctx, n), ref, rtol=1e-12)
            flops, hbm = c.decode_run_work(b, ctx, n)
            tot = c.decode_run_totals(b, ctx, n)
            assert flops == pytest.approx(tot.flops, rel=1e-9) and hbm == pytest.approx(tot.hbm_bytes, rel=1e-9)


def test_closed_form_run_totals_equal_the_step_by_step_sums():
    """A decode run inside one table cell is totalled in closed form (engine hot path); every field,
    the bound-by split included, must equal the per-step evaluation."""
    from simcluster.perf.step_cost import CostSpec, build_step_cost

    rng = np.random.default_rng(11)
    for model, layout in (("llama-3.1-70b", "tp=2"), ("deepseek-r1", "dp=8,ep=8")):
        c = build_step_cost(CostSpec("h200_sxm", model, "fp8", "fp8", "bf16", layout))
        checked = 0
        for _ in range(400):
            b = int(rng.integers(1, 300))
            ctx = int(b * rng.integers(1, 20_000))
            n = int(rng.integers(1, 200))
            detail: list = []
            if c._affine_run(b, ctx, n, detail) is None:
                continue
            fast = c._affine_totals(b, n, detail)
            c._run_cache[(b, ctx)] = (n, c._run_parts(b, ctx, n))  # the generic path's inputs
            slow_path = c._affine_run
            c._affine_run = lambda *a, **k: None
            try:
                ref = c.decode_run_totals(b, ctx, n)
            finally:
                c._affine_run = slow_path
            for f in ("latency_s", "weight_read_s", "kv_read_s", "compute_s", "comm_s", "other_s",
                      "flops", "hbm_bytes"):
                assert getattr(fast, f) == pytest.approx(getattr(ref, f), rel=1e-12, abs=1e-15), f
            checked += 1
        assert checked > 100


@pytest.mark.parametrize("layout", ["dp=8,tpf=8", "dp=8,ep=4,tpf=2", "dp=4,ep=2,tpf=2"])
def test_dp_attention_with_tp_sharded_experts_moves_the_dense_ffn_bytes(layout):
    """DP attention with TP-sharded experts gathers the stage's tokens and reduce-scatters their outputs,
    like a dense FFN under DP: T·H·b_a each way, whatever the top-k (the k expert outputs of a token are
    summed on the rank before the reduction; an all-reduce of T·k·H per layer overstated it k-fold)."""
    from simcluster.catalog.models import get_model

    m = get_model("deepseek-r1")
    c = Composer(CostSpec("b200_sxm", "deepseek-r1", "fp8", "fp8", "bf16", layout))
    shape = prefill(8, 2048)
    layers = {L["ffn"]: L for L in c.describe(shape)["layers"]}
    comm = {L: {o["name"]: o["comm_bytes"] for o in layers[L]["ops"] if o.get("bound") == "comm"}
            for L in ("dense", "moe")}
    stage_bytes = 8 * 2048 * m.hidden_size * 2  # BF16 activations
    assert comm["dense"] == {"ffn_all_gather": stage_bytes, "ffn_reduce_scatter": stage_bytes}
    assert {k: v for k, v in comm["moe"].items() if k.startswith("moe_")} == \
        {"moe_all_gather": stage_bytes, "moe_reduce_scatter": stage_bytes}


def test_dp_attention_with_pure_ep_sends_each_token_to_its_k_experts():
    from simcluster.catalog.models import get_model

    m = get_model("deepseek-r1")
    c = Composer(CostSpec("b200_sxm", "deepseek-r1", "fp8", "fp8", "bf16", "dp=8,ep=8"))
    moe = next(L for L in c.describe(prefill(8, 2048))["layers"] if L["ffn"] == "moe")
    comm = {o["name"]: o["comm_bytes"] for o in moe["ops"] if o.get("bound") == "comm"}
    per_replica = 2048 * m.num_experts_per_token * m.hidden_size * 2  # one prompt per replica, k copies
    assert comm == {"moe_dispatch": per_replica, "moe_combine": per_replica}
