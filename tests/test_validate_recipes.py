"""The benchmark harness behind measured rows (simcluster/validate/recipes.py) and what the mapping
takes from it: speculative decoding, disaggregated worker counts, launch flags, length spread."""

from __future__ import annotations

import pytest

from simcluster.validate.mapping import Setup, map_row, recipe_budget
from simcluster.validate.recipes import harness_of, image_of, load_index, match, measured_date, script_settings
from simcluster.validate.silicon import parse_row

from test_validate_silicon import _agg

SCRIPT = """#!/usr/bin/env bash
source "$(dirname "$0")/../benchmark_lib.sh"
if [[ $CONC -ge 16 ]]; then
  SCHEDULER_RECV_INTERVAL=30
else
  SCHEDULER_RECV_INTERVAL=10
fi
if [[ $TP -eq 8 ]]; then
  CHUNK=32768
elif [[ $TP -eq 4 ]] && [[ "$ISL" == "8192" ]]; then
  CHUNK=8192
else
  CHUNK=4096
fi
# a comment --max-running-requests 1
cat > config.yaml << EOF
kv-cache-dtype: fp8
EOF
PYTHONNOUSERSITE=1 python3 -m sglang.launch_server --model-path=$MODEL --tp $TP \\
  --max-running-requests $((CONC * 2)) --chunked-prefill-size $CHUNK \\
  --scheduler-recv-interval $SCHEDULER_RECV_INTERVAL > $SERVER_LOG 2>&1 &
"""


@pytest.mark.parametrize("env, want", [
    ({"TP": 8, "CONC": 64, "ISL": 1024}, {"budget": 32768, "max_seqs": 128, "recv_interval": 30, "kv": "fp8"}),
    ({"TP": 4, "CONC": 8, "ISL": 8192}, {"budget": 8192, "max_seqs": 16, "recv_interval": 10, "kv": "fp8"}),
    ({"TP": 4, "CONC": 4, "ISL": 1024}, {"budget": 4096, "max_seqs": 8, "recv_interval": 10, "kv": "fp8"}),
])
def test_launch_scripts_are_evaluated_like_the_shell_would(env, want):
    assert script_settings(SCRIPT, env) == want


def test_the_arithmetic_of_the_trtllm_scripts():
    text = ("MAX_NUM_TOKENS=$(( (CONC + ISL + 64 + 63) / 64 * 64 ))\n"
            "MAX_NUM_TOKENS=$(( MAX_NUM_TOKENS > 8192 ? MAX_NUM_TOKENS : 8192 ))\n"
            "trtllm-serve $MODEL --max_num_tokens=$MAX_NUM_TOKENS --tp_size=$TP\n")
    assert script_settings(text, {"CONC": 256, "ISL": 8192})["budget"] == 8512  # ⌈(256 + 8192 + 64) / 64⌉·64
    assert script_settings(text, {"CONC": 4, "ISL": 1024})["budget"] == 8192


def test_inferencex_rows_are_recognised_by_their_source():
    src = ("source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency=4; measured=2026-02-06T00:00:00.000Z;"
           " wip=False; image=nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post3")
    assert harness_of(src) == "inferencex"
    assert harness_of("db-dump/2026-04-27; config_id=759; silicon_concurrency=4") == "inferencex"
    assert harness_of("source_file=/Users/x/aic-auto-gap-analysis/data/h200_sxm/vllm/0.12.0/a.csv") == ""
    assert measured_date(src) == "2026-02-06"
    assert image_of(src) == "nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3"


def _needs_index():
    if not load_index()["entries"]:
        pytest.skip("no recipe index shipped")


def test_a_row_takes_mtp_from_the_recipe_it_ran_with():
    _needs_index()
    # InferenceX ran DeepSeek-R1 FP4 on B200 with TRT-LLM twice: dsr1-fp4-b200-trt on image
    # release:1.2.0rc6.post2 and dsr1-fp4-b200-trt-mtp (num_nextn_predict_layers 3 with TP attention,
    # dsr1_fp4_b200_trt_mtp.sh) on release:1.2.0rc6.post3
    common = dict(backend="trtllm", model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4",
                  gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", isl=1024, osl=1024, batch_size=4, tp_size=4,
                  moe_tp_size=4, moe_ep_size=1)
    src = ("source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency=4; measured=2026-02-0{d}T00:00:00.000Z;"
           " wip=False; image=nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post{p}")
    mtp = parse_row(_agg(silicon_data_source=src.format(d=6, p=3), **common), 2, "f.csv")
    plain = parse_row(_agg(silicon_data_source=src.format(d=3, p=2), **common), 2, "f.csv")
    r1, r0 = match(mtp, "deepseek-r1"), match(plain, "deepseek-r1")
    assert (r1.key, r1.spec, r1.mtp_draft_tokens) == ("dsr1-fp4-b200-trt-mtp", "mtp", 3)
    assert (r0.key, r0.spec) == ("dsr1-fp4-b200-trt", "none")
    s1, s0 = map_row(mtp), map_row(plain)
    assert isinstance(s1, Setup) and isinstance(s0, Setup)
    assert (s1.spec_tokens, s0.spec_tokens) == (3, 0)
    assert s1.range_ratio == s0.range_ratio == 0.8  # benchmark_serving.py --random-range-ratio 0.8
    # the MTP script's max_num_tokens: ⌈((k+1)·batch + ISL + 64) / 64⌉·64 = 1152, less the k extra
    # tokens of each of the 4 sequences that the engine counts as one
    assert s1.pools["colocated"].max_num_batched_tokens == 1152 - 3 * 4
    # a row of an unknown harness keeps fixed lengths and no MTP
    s = map_row(parse_row(_agg(**common), 2, "f.csv"))
    assert (s.spec_tokens, s.range_ratio, s.recipe) == (0, 1.0, "")


def test_disaggregated_rows_take_worker_counts_and_layouts_from_the_recipe():
    _needs_index()
    # dsr1-fp4-b200-dynamo-trt, 1k/1k, concurrency 6: ctx1_gen5_tep8_batch1_eplb0_mtp3 — one TP4/EP4
    # DP-attention prefill worker, five TEP8 decode workers, MTP with 3 draft tokens
    rec = dict.fromkeys(("batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size"), "")
    rec.update(backend="trtllm", model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4",
               mode="disagg", isl="1024", osl="1024", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4",
               prefill_tp_size="4", prefill_pp_size="1", prefill_attention_dp_size="1", prefill_moe_tp_size="1",
               prefill_moe_ep_size="4", decode_tp_size="8", decode_pp_size="1", decode_attention_dp_size="1",
               decode_moe_tp_size="2", decode_moe_ep_size="4",
               silicon_data_source="source_file=2026-03-25.csv; model=DeepSeek-R1; silicon_concurrency=6; "
                                   "measured=2026-02-06T00:00:00.000Z; wip=False; "
                                   "image=nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1.post1")
    s = map_row(parse_row(_agg(**rec), 2, "f.csv"))
    assert isinstance(s, Setup)
    assert (s.pools["prefill"].instances, s.pools["decode"].instances) == (1, 5)
    assert s.pools["prefill"].layout.startswith("tp=1,dp=4,ep=4")
    assert s.pools["decode"].layout.startswith("tp=8,dp=1,ep=8")
    assert s.spec_tokens == 3


def test_recipe_budgets_are_per_rank_and_count_tokens_as_each_framework_does():
    # vLLM --max-num-batched-tokens counts decodes like the engine: per rank × ranks
    assert recipe_budget("vllm", {"budget": 2048}, 8192, 256, 1, 0) == (2048, 0)
    # SGLang --chunked-prefill-size bounds the prefill batch alone: the decodes are added
    assert recipe_budget("sglang", {"budget": 16384, "max_seqs": 128}, 8192, 64, 1, 0) == (16384 + 64, 128)
    # TRT-LLM max_num_tokens counts k+1 tokens per sequence with k drafts; per attention-DP rank
    assert recipe_budget("trtllm", {"budget": 1152}, 8192, 256, 4, 1) == ((1152 - 64) * 4, 0)
    # no recipe: the framework default, per rank
    assert recipe_budget("sglang", {}, 16384, 64, 8, 0) == (16384 * 8, 0)
