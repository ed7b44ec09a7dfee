"""Helix Parallelism targets H-1 … H-6 (SEED-NOTES §1.3–1.6, §1.11, §8).

The expected values are the paper's Appendix A formulas, written out here independently of the
code under test, and the numbers SEED-NOTES §1.11 quotes from them.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcluster.cli.main import main
from simcluster.perf.helix import KVRoundRobin, hop_b_span

# Appendix A / Fig. 1 setup: B=8, Q=128, K=8, Hsz=128, H=16384, F=65536, FP4 = 0.5 B, 8000 GB/s.
B, Q, K, HSZ, H, F = 8, 128, 8, 128, 16384, 65536
BYTES = 0.5
MEMBW = 8000e9  # the catalog's gb200 has 8.0e12 B/s


def t_kv(tpa: int, kvp: int, s: float) -> float:
    return B * 2 * math.ceil(K / tpa) * HSZ * (s / kvp) * BYTES / MEMBW


def t_w(tpa: int, tpf: int) -> float:
    return (2 * H * (Q / tpa) * HSZ + 2 * H * math.ceil(K / tpa) * HSZ + 3 * H * F / tpf) * BYTES / MEMBW


@pytest.fixture(scope="module")
def appendix_a_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("helix") / "config.json"
    path.write_text(json.dumps({
        "num_hidden_layers": 4, "hidden_size": H, "num_attention_heads": Q, "num_key_value_heads": K,
        "head_dim": HSZ, "intermediate_size": F, "vocab_size": 128256,
    }))
    return str(path)


def cost_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    rc = main(["cost", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def sol_layer(capsys, config: str, layout: str, context: float) -> dict:
    r = cost_json(capsys, "--gpu", "gb200", "--model", config, "--weights", "fp4", "--kv", "fp4", "--phase",
                  "decode", "--batch", str(B), "--context", str(int(context)), "--layout", layout, "--sol")
    assert len(r["layers"]) == 1
    return r["layers"][0]


@pytest.mark.parametrize("tp, paper_t_kv_us, paper_t_w_us", [
    (1, 1024.00, 236.98), (2, 512.00, None), (4, 256.00, None), (8, 128.00, 29.62),
    (16, 128.00, 14.94), (64, 128.00, 3.93),
])
def test_h1_tp_sweep_reproduces_appendix_a(capsys, appendix_a_config, tp, paper_t_kv_us, paper_t_w_us):
    """H-1: t_KV halves with TP down to K=8 and is flat beyond; t_W as Appendix A."""
    layer = sol_layer(capsys, appendix_a_config, f"tp={tp}", 1e6)
    assert layer["kv_read_s"] == pytest.approx(t_kv(tp, 1, 1e6), rel=5e-3)
    assert layer["kv_read_s"] * 1e6 == pytest.approx(paper_t_kv_us, rel=5e-3)
    assert layer["weight_read_s"] == pytest.approx(t_w(tp, tp), rel=5e-3)
    if paper_t_w_us is not None:
        assert layer["weight_read_s"] * 1e6 == pytest.approx(paper_t_w_us, rel=5e-3)


@pytest.mark.parametrize("kvp, paper_t_kv_us, paper_t_w_us", [
    (1, 128.00, 29.62), (2, 64.00, 17.04), (4, 32.00, 10.75), (8, 16.00, 7.60),
])
def test_h2_kvp_sweep_reproduces_appendix_a(capsys, appendix_a_config, kvp, paper_t_kv_us, paper_t_w_us):
    """H-2: Helix TPA=8, TPF=8·KVP. Appendix A counts W_O at Q/TPA, i.e. the O-projection sharded
    over the TPA group (``tpo=8``); the default Helix layout shards it over all N GPUs."""
    layer = sol_layer(capsys, appendix_a_config, f"kvp={kvp},tpa=8,tpf={8 * kvp},tpo=8", 1e6)
    assert layer["kv_read_s"] == pytest.approx(t_kv(8, kvp, 1e6), rel=5e-3)
    assert layer["kv_read_s"] * 1e6 == pytest.approx(paper_t_kv_us, rel=5e-3)
    assert layer["weight_read_s"] == pytest.approx(t_w(8, 8 * kvp), rel=5e-3)
    assert layer["weight_read_s"] * 1e6 == pytest.approx(paper_t_w_us, rel=5e-3)


def test_helix_default_o_projection_is_sharded_over_all_n(capsys, appendix_a_config):
    """With the default tpo = N the per-GPU W_O read is Q·Hsz·H/N instead of Q·Hsz·H/TPA."""
    layer = sol_layer(capsys, appendix_a_config, "kvp=4,tpa=8,tpf=32", 1e6)
    w_o_at_tpa = H * (Q / 8) * HSZ * BYTES / MEMBW
    w_o_at_n = H * (Q / 32) * HSZ * BYTES / MEMBW
    assert layer["weight_read_s"] == pytest.approx(t_w(8, 32) - w_o_at_tpa + w_o_at_n, rel=5e-3)


@pytest.mark.parametrize("s, paper_us", [(4096, 0.52), (65536, 8.39), (262144, 33.55), (1e6, 128.0), (4e6, 512.0)])
def test_h3_kv_read_linear_in_sequence_length(capsys, appendix_a_config, s, paper_us):
    """H-3: t_KV at TP=8 grows linearly with S."""
    layer = sol_layer(capsys, appendix_a_config, "tp=8", s)
    assert layer["kv_read_s"] == pytest.approx(t_kv(8, 1, s), rel=5e-3)
    assert layer["kv_read_s"] * 1e6 == pytest.approx(paper_us, rel=5e-3, abs=0.005)  # quoted to 2 decimals


def a2a_formula(b, width, q, kvp, tpa, b_act=2.0, n_stat=1):
    return (kvp - 1) * b * width / (kvp * tpa) * b_act + (kvp - 1) * b * (q / (tpa * kvp)) * n_stat * 4


@pytest.mark.parametrize("n_stat", [1, 2])
def test_h4_a2a_bytes_independent_of_sequence_length(capsys, appendix_a_config, n_stat):
    """H-4: the All-to-All volume depends on B and H only, never on S."""
    sent = set()
    for s in (131072, 1_000_000, 4_000_000):
        r = cost_json(capsys, "--gpu", "gb200", "--model", appendix_a_config, "--weights", "fp4", "--kv", "fp4",
                      "--batch", str(B), "--context", str(s), "--layout", "kvp=4,tpa=8,tpf=32",
                      "--n-stat", str(n_stat))
        sent.add(r["layers"][0]["a2a_send_bytes"])
    assert len(sent) == 1
    assert sent.pop() == pytest.approx(a2a_formula(B, H, Q, 4, 8, n_stat=n_stat), rel=1e-9)


def test_h4_mla_latent_payload_is_heads_times_kv_lora_rank(capsys):
    """The MLA knob: TRT-LLM exchanges 128 × 512 latent values per token instead of H = 7168."""
    common = ["--gpu", "gb200", "--model", "deepseek-r1", "--weights", "fp4", "--kv", "fp4", "--batch", "4",
              "--context", "100000", "--layout", "kvp=8,tpa=1,ep=8,tpf=1"]
    hidden = cost_json(capsys, *common)["layers"][0]["a2a_send_bytes"]
    latent = cost_json(capsys, *common, "--a2a-payload", "latent")["layers"][0]["a2a_send_bytes"]
    assert hidden == pytest.approx(a2a_formula(4, 7168, 128, 8, 1))
    assert latent == pytest.approx(a2a_formula(4, 128 * 512, 128, 8, 1))


def test_h5_hop_b_toy_example():
    """H-5: 8 requests, compute 2, communication 1.2: lockstep 25.6, HOP-B 17.2 (the paper's "≈17")."""
    assert hop_b_span(8, 2.0, 1.2, overlap=False) == pytest.approx(25.6)
    assert hop_b_span(8, 2.0, 1.2, overlap=True) == pytest.approx(17.2)


@settings(max_examples=200, deadline=None)
@given(kvp=st.integers(1, 16), block=st.sampled_from([1, 7, 16, 32, 64]), prefill=st.integers(0, 4000),
       steps=st.integers(0, 400))
def test_h6_round_robin_kv_lengths_differ_by_at_most_one_block(kvp, block, prefill, steps):
    """H-6: KV appended round-robin in blocks keeps every rank within one block of every other."""
    kv = KVRoundRobin(kvp, block=block, prefill_tokens=prefill)
    assert kv.total == prefill
    assert max(kv.lengths) - min(kv.lengths) <= block
    for i in range(steps):
        kv.append(1)
        assert max(kv.lengths) - min(kv.lengths) <= block, f"step {i}: {kv.lengths}"
    assert kv.total == prefill + steps


def test_h6_prefill_blocks_go_round_robin_lowest_ranks_first():
    """TRT-LLM: blocks spread round-robin, the lowest ranks take the extra block."""
    kv = KVRoundRobin(4, block=32, prefill_tokens=32 * 6 + 5)
    assert kv.lengths == [64, 64, 37, 32]  # 6 full blocks: ranks 0, 1 take two; the partial block on rank 2
    assert kv.active_rank == 2  # decode keeps filling rank 2's partial block
