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


TRT_SCRIPT = """CUDA_GRAPH_MAX_BATCH_SIZE=$CONC
DELAY_BATCHING="false"
if [[ "$ISL" == "1024" && "$OSL" == "1024" ]]; then
    if [[ $CONC -ge 64 ]]; then
        DELAY_BATCHING="true"
    fi
fi
cat > $EXTRA_CONFIG_FILE << EOF
enable_attention_dp: $DP_ATTENTION
kv_cache_config:
    dtype: fp8
EOF
if [[ "$DP_ATTENTION" == "true" ]]; then
    cat << EOF >> $EXTRA_CONFIG_FILE
attention_dp_config:
    batching_wait_iters: 0
    enable_balance: true
    timeout_iters: 60
EOF
fi
if [[ "$DELAY_BATCHING" == "true" ]]; then
    cat << EOF >> $EXTRA_CONFIG_FILE
batch_wait_timeout_iters: 40
batch_wait_max_tokens_ratio: 0.8
EOF
fi
MAX_NUM_TOKENS=8192
trtllm-serve $MODEL --max_num_tokens=$MAX_NUM_TOKENS --tp_size=$TP
"""


@pytest.mark.parametrize("env, want", [
    ({"DP_ATTENTION": "true", "CONC": 64, "ISL": 1024, "OSL": 1024},
     {"kv": "fp8", "adp_balance": 1, "adp_timeout_iters": 60, "adp_wait_iters": 0, "bw_timeout_iters": 40,
      "bw_max_tokens_ratio": 0.8, "budget": 8192}),
    ({"DP_ATTENTION": "false", "CONC": 64, "ISL": 1024, "OSL": 1024},
     {"kv": "fp8", "bw_timeout_iters": 40, "bw_max_tokens_ratio": 0.8, "budget": 8192}),
    ({"DP_ATTENTION": "false", "CONC": 32, "ISL": 8192, "OSL": 1024}, {"kv": "fp8", "budget": 8192}),
])
def test_trtllm_scheduler_holds_are_read_from_the_extra_options_here_documents(env, want):
    assert script_settings(TRT_SCRIPT, env) == want


def test_the_index_window_is_by_the_commits_own_day_not_the_build_time(tmp_path):
    import subprocess

    from simcluster.validate.recipes import build_index

    repo = tmp_path / "ix"
    (repo / ".github" / "configs").mkdir(parents=True)
    git = ["git", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)

    def commit(conc: int, when: str) -> None:
        (repo / ".github" / "configs" / "nvidia-master.yaml").write_text(
            "dsr1-fp4-b200-trt:\n  image: img\n  model-prefix: dsr1\n  precision: fp4\n  framework: trt\n"
            f"  seq-len-configs:\n  - isl: 1024\n    osl: 1024\n    search-space:\n    - {{tp: 8, conc-list: [{conc}]}}\n")
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_NAME": "t",
               "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
               "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        subprocess.run(git + ["add", "-A"], check=True, env=env)
        subprocess.run(git + ["commit", "-q", "-m", str(conc)], check=True, env=env)

    commit(4, "2026-05-14T20:43:00-07:00")  # the 14th where it was made (the 15th in UTC): inside
    commit(8, "2026-05-15T13:00:00-04:00")  # the 15th: outside [since, until)
    idx = build_index(repo, since="2026-05-01", until="2026-05-15")
    assert [(e["conc"], e["first"], e["last"]) for e in idx["entries"]] == [([4], "2026-05-14", "2026-05-14")]



def test_recipe_scheduler_holds_reach_the_simulated_pool():
    from conftest import shared_path
    from simcluster.validate.silicon import read_silicon_csv
    from simcluster.validate.simulate import scenario_dict

    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    by_line = {r.line: r for r in rows}
    # DeepSeek-R1 FP8 on 8 B200, TRT-LLM with attention DP (DEP8), 1k/8k at concurrency 128
    dep = map_row(by_line[1422])
    assert dep.pools["colocated"].layout.startswith("tp=1,dp=8")
    assert dep.pools["colocated"].adp_balance == (("timeout_iters", 60), ("batching_wait_iters", 0))
    assert scenario_dict(dep, dep.pools)["pools"]["colocated"]["attention_dp_balance"] == {
        "timeout_iters": 60, "batching_wait_iters": 0}
    # the same model with TP 8 at 1k/1k and concurrency 128: delayed batching instead
    tp = map_row(by_line[207])
    assert tp.pools["colocated"].adp_balance is None
    assert scenario_dict(tp, tp.pools)["pools"]["colocated"]["batch_wait"] == {"timeout_iters": 40,
                                                                               "max_tokens_ratio": 0.8}


def _gb200_agg_row(tp: int, conc: int, isl: int = 8192, measured: str = "2025-11-17"):
    rec = dict(backend="trtllm", model_path="deepseek-ai/DeepSeek-R1", system="gb200", precision="fp4", mode="agg",
               isl=str(isl), osl="1024", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", batch_size=str(conc),
               tp_size=str(tp), pp_size="1", attention_dp_size="1", moe_tp_size=str(tp), moe_ep_size="1",
               silicon_data_source=f"source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency={conc}; "
                                   f"measured={measured}T00:00:00.000Z; wip=False")
    return parse_row(_agg(**rec), 2, "f.csv")


@pytest.mark.parametrize("tp, conc, isl", [(32, 2150, 8192), (48, 2150, 8192), (40, 1075, 8192), (24, 4300, 1024),
                                           (12, 2252, 1024)])
def test_an_agg_row_of_a_disaggregated_runs_gpu_count_is_mapped_as_that_run_on_as_many_gpus(tp, conc, isl):
    from simcluster.perf.layout import Layout
    from simcluster.validate.recipes import entry_gpus, match_disaggregated_run

    _needs_index()
    # GB200 DeepSeek-R1 NVFP4 agg rows of "tp N" at concurrencies only disaggregated entries list
    # (e.g. dsr1-fp4-gb200-dynamo-trt at 2,150 clients, 8k/1k: 6 DEP4 prefill workers + one DEP8
    # decode worker = 32 GPUs)
    row = _gb200_agg_row(tp, conc, isl)
    assert match(row, "deepseek-r1") is None  # no aggregated entry
    rec = match_disaggregated_run(row, "deepseek-r1")
    assert rec is not None and rec.prefill_workers * rec.prefill[0] + rec.decode_workers * rec.decode[0] == tp
    s = map_row(row)
    assert isinstance(s, Setup) and s.mode == "disaggregated" and s.concurrency == conc
    gpus = sum(Layout.parse(p.layout).gpus * p.instances for p in s.pools.values())
    assert gpus == tp  # the same GPUs as the row: nothing invented, nothing lost
    assert s.notes[0].startswith(f"agg row of {tp} GPUs read as the disaggregated run")
    assert s.row is row  # the report keeps the row as the file wrote it
    assert all(entry_gpus(e) > 0 for e in load_index()["entries"] if e["disagg"])


def test_an_agg_row_whose_gpu_count_no_disaggregated_entry_has_is_not_read_as_one():
    from simcluster.validate.recipes import match_disaggregated_run

    _needs_index()
    row = _gb200_agg_row(20, 2150)  # no GB200 DeepSeek-R1 FP4 8k/1k entry has 20 GPUs
    assert match_disaggregated_run(row, "deepseek-r1") is None
    s = map_row(row)
    assert not isinstance(s, Setup) and "must divide" in s.reason  # stays an (impossible) agg TP 20
    # an agg row that an aggregated entry describes is never re-read
    b200 = parse_row(_agg(backend="trtllm", model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm",
                          precision="fp4", isl="1024", osl="1024", gemm_quant_mode="nvfp4",
                          moe_quant_mode="nvfp4", batch_size="32", tp_size="8", moe_tp_size="1",
                          moe_ep_size="8",
                          silicon_data_source="source_file=2026-03-25.csv; model=DeepSeek-R1; "
                                              "silicon_concurrency=32; measured=2026-02-06T00:00:00.000Z"),
                    2, "f.csv")
    s = map_row(b200)
    assert isinstance(s, Setup) and s.mode == "colocated"
