"""The recipe files of disaggregated deployments (simcluster/validate/srtslurm.py) and what they do to
a simulated deployment: each side's batch cap, token budget and memory share, a decode pool whose
batch cap is below the number of clients, and per-pool memory settings."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml

from simcluster.validate.mapping import recipe_budget
from simcluster.validate.srtslurm import RecipeFiles, config_ref, env_settings, pool_settings, resolve

TRT_FILE = """
name: ctx1_gen3_tep8_batch8_eplb0_mtp0_27
resources: {prefill_workers: 1, decode_workers: 3}
backend:
  type: trtllm
  trtllm_config:
    prefill:
      tensor_parallel_size: 8
      enable_attention_dp: true
      max_batch_size: 16
      max_num_tokens: 16384
      kv_cache_config: {dtype: fp8, free_gpu_memory_fraction: 0.5}
    decode:
      tensor_parallel_size: 8
      enable_attention_dp: false
      max_batch_size: 8
      max_num_tokens: 8
      kv_cache_config: {dtype: fp8, free_gpu_memory_fraction: 0.9}
"""

SGLANG_ZIP_FILE = """
base:
  backend:
    sglang_config:
      prefill: {mem-fraction-static: 0.85, chunked-prefill-size: 32768, max-running-requests: 512,
                kv-cache-dtype: fp8_e4m3}
      decode: {mem-fraction-static: 0.85, max-running-requests: 512}
zip_override_maxtpt:
  resources: {decode_workers: [5, 5]}
  backend:
    sglang_config:
      decode: {max-running-requests: [1024, 2048], data-parallel-size: 8}
"""


def test_a_trtllm_recipe_file_gives_each_side_its_batch_cap_budget_and_memory_share():
    st = pool_settings(resolve(yaml.safe_load(TRT_FILE)))
    assert st == {"prefill_max_seqs": 16, "prefill_budget": 16384, "prefill_mem_fraction": 0.5,
                  "decode_max_seqs": 8, "decode_budget": 8, "decode_mem_fraction": 0.9, "kv": "fp8"}


def test_a_zip_override_takes_the_base_with_the_nth_element_of_each_list():
    doc = yaml.safe_load(SGLANG_ZIP_FILE)
    for i, seqs in ((0, 1024), (1, 2048)):
        st = pool_settings(resolve(doc, "zip_override_maxtpt", i))
        assert st["decode_max_seqs"] == seqs
        # what the override does not name stays the base's
        assert st["decode_mem_fraction"] == 0.85 and st["prefill_budget"] == 32768 and st["kv"] == "fp8"


def test_the_entry_settings_name_the_file_and_the_older_environment_settings():
    assert config_ref('CONFIG_FILE=recipes/b200-fp8/1k1k.yaml:zip_override_stp_lowlat[1]') == (
        "recipes/b200-fp8/1k1k.yaml", "zip_override_stp_lowlat", 1)
    assert config_ref("CONFIG_FILE=recipes/trtllm/gb200-fp8/1k1k/stp/a_b.yaml") == (
        "recipes/trtllm/gb200-fp8/1k1k/stp/a_b.yaml", "", 0)
    assert config_ref("PREFILL_NODES=1") is None
    assert env_settings("PREFILL_MAX_BATCH_SIZE=32 DECODE_MAX_BATCH_SIZE=64 DECODE_GPU_MEM_FRACTION=0.8") == {
        "prefill_max_seqs": 32, "decode_max_seqs": 64, "decode_mem_fraction": 0.8}


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    if date:
        env.update(GIT_AUTHOR_DATE=f"{date}T12:00:00", GIT_COMMITTER_DATE=f"{date}T12:00:00")
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def test_a_recipe_file_is_read_as_it_was_on_the_day(tmp_path):
    """The version in force on the day: its last version on or before it — a commit that deleted the
    file does not count — else its first version after it."""
    repo = tmp_path / "srt"
    repo.mkdir()
    _git(repo, "init", "-q")
    f = repo / "recipes" / "x.yaml"
    f.parent.mkdir()
    for date, batch in (("2026-01-10", 4), ("2026-02-10", 16)):
        f.write_text(TRT_FILE.replace("max_batch_size: 8", f"max_batch_size: {batch}"))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", date, date=date)
    f.unlink()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "delete", date="2026-03-10")
    files = RecipeFiles(str(repo))
    ref = "CONFIG_FILE=recipes/x.yaml"
    assert files.settings(ref, "2026-01-01")["decode_max_seqs"] == 4  # before it existed: its first version
    assert files.settings(ref, "2026-01-20")["decode_max_seqs"] == 4
    assert files.settings(ref, "2026-02-20")["decode_max_seqs"] == 16
    assert files.settings(ref, "2026-04-01")["decode_max_seqs"] == 16  # deleted since: the last version
    assert files.settings("CONFIG_FILE=recipes/none.yaml DECODE_MAX_BATCH_SIZE=2", "2026-04-01") == {
        "decode_max_seqs": 2}


def test_sglang_flags_are_per_server_and_trtllm_flags_per_attention_dp_rank():
    # SGLang divides --chunked-prefill-size and --max-running-requests among its attention-DP ranks
    # (server_args: chunked_prefill_size //= dp_size; the scheduler: max_running_requests // dp_size)
    assert recipe_budget("sglang", {"budget": 32768, "max_seqs": 1024}, 8192, 0, 8, 0) == (32768, 1024)
    assert recipe_budget("sglang", {"budget": 32768, "max_seqs": 1020}, 8192, 64, 8, 0) == (32768 + 64, 1016)
    # TRT-LLM's max_batch_size and max_num_tokens are each rank's
    assert recipe_budget("trtllm", {"budget": 16384, "max_seqs": 16}, 8192, 0, 8, 0) == (16384 * 8, 128)


def _closed_loop_disagg(decode_seqs: int, clients: int) -> dict:
    return {
        "name": "decode-cap", "cluster": {"gpu": "h200_sxm"},
        "model": {"name": "llama-3.1-8b", "weights": "bf16", "kv_cache": "bf16"},
        "serving": {"mode": "disaggregated", "prefix_caching": False},
        "pools": {"prefill": {"instances": 1, "layout": "tp=1", "max_queue": 10**9},
                  "decode": {"instances": 1, "layout": "tp=1", "max_num_seqs": decode_seqs, "max_queue": 10**9}},
        "cost": {"source": "constant", "constant_step_s": 0.01},
        "workload": {"kind": "synthetic", "num_requests": 400, "arrival": {"process": "poisson", "rate_per_s": 1e6},
                     "input_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 50}},
        "clients": {"max_concurrency": clients},
        "output": {"steps": False},
    }


@pytest.mark.parametrize("seqs, clients", [(4, 8), (4, 12), (3, 12)])
def test_clients_beyond_the_decode_batch_cap_wait_for_a_slot(tmp_path, seqs, clients):
    """C closed-loop clients, a decode instance that holds S < C sequences: a request holds its slot
    for T = osl steps, so S / T requests finish per second and, by Little's law, the C − S waiting
    ones wait (C − S) · T / S each; the first token comes after that wait."""
    from simhelp import run

    step, osl = 0.01, 50
    _, req, _ = run(tmp_path, _closed_loop_disagg(seqs, clients))
    assert (req.status == "completed").all()
    steady = req.iloc[2 * clients:-2 * clients]
    hold = osl * step  # the first decode step samples the first token, then osl - 1 more
    expect = (clients - seqs) * hold / seqs
    prefill = step  # one prefill step of a 16-token prompt
    assert math.isclose(steady.ttft_s.mean(), expect + prefill, rel_tol=0.10)
    # TPOT stays the decode step: the cap queues requests, it does not slow the batch
    assert steady.tpot_s.mean() == pytest.approx(step, rel=1e-6)


def test_without_a_cap_the_same_clients_do_not_wait(tmp_path):
    from simhelp import run

    _, req, _ = run(tmp_path, _closed_loop_disagg(64, 12))
    assert req.iloc[24:-24].ttft_s.mean() < 0.1


def test_a_pool_memory_section_sets_that_pool_s_kv_pool_only():
    """TRT-LLM's KV pool is a share of the memory the weights leave: the decode pool at 0.45 holds
    half of what the prefill pool at the serving section's 0.9 holds."""
    from simcluster.config.scenario import Scenario
    from simcluster.sim.deployment import build_pools

    data = {
        "name": "pool-memory", "cluster": {"gpu": "h200_sxm"},
        "model": {"name": "llama-3.1-8b", "weights": "bf16", "kv_cache": "bf16"},
        "serving": {"framework": "trtllm", "mode": "disaggregated", "kv_free_memory_fraction": 0.9},
        "pools": {"prefill": {"instances": 1, "layout": "tp=1"},
                  "decode": {"instances": 1, "layout": "tp=1", "memory": {"kv_free_memory_fraction": 0.45}}},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 4}},
    }
    plans = {p.role: p for p in build_pools(Scenario.model_validate(data))}
    assert plans["decode"].kv_capacity_tokens == pytest.approx(plans["prefill"].kv_capacity_tokens / 2, rel=1e-3)
    # a cap (SGLang --max-total-tokens) below what memory holds is the pool; one above it changes nothing
    full = plans["prefill"].kv_capacity_tokens
    for cap, want in ((1000, 1000), (full * 10, full)):
        data["pools"]["prefill"]["memory"] = {"max_kv_tokens": cap}
        plans = {p.role: p for p in build_pools(Scenario.model_validate(data))}
        assert plans["prefill"].kv_capacity_tokens == want


def _dev_rows():
    from conftest import shared_path
    from simcluster.validate.silicon import read_silicon_csv

    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    return {r.line: r for r in rows}


def test_a_measured_deployment_with_more_clients_than_decode_slots_queues_as_measured():
    """InferenceX's DeepSeek-R1 FP8 on GB200 with TRT-LLM, 1k/1k at 27 clients (recipe file
    ctx1_gen3_tep8_batch8: three TEP8 decode workers of max_batch_size 8 = 24 slots): 3 clients
    always wait a whole request for a slot. Measured TTFT 1.56 s; without the cap 0.35 s."""
    from simcluster.validate.mapping import map_row
    from simcluster.validate.simulate import Simulator

    row = _dev_rows()[1437]
    setup = map_row(row)
    dec = setup.pools["decode"]
    assert (dec.instances, dec.max_num_seqs) == (3, 8)
    requests, pred = Simulator().timeline(setup)
    assert all(r["status"] == "completed" for r in requests)
    # Little's law on the simulated run: (C - S) waiting clients, S slots each held for osl · TPOT
    osl = sum(r["output_tokens"] for r in requests) / len(requests)
    wait = (setup.concurrency - 24) * osl * pred.tpot_ms / 24
    assert math.isclose(pred.ttft_ms, wait, rel_tol=0.35)
    assert math.isclose(pred.ttft_ms, row.ttft_ms, rel_tol=0.30)


def test_building_the_index_from_a_folder_that_is_not_a_clone_is_a_user_error(tmp_path, capsys):
    from simcluster.validate.recipes import main

    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path), "-o", str(tmp_path / "index.json")])
    assert exc.value.code == 2
    assert "is not a git clone" in capsys.readouterr().err
    assert not (tmp_path / "index.json").exists()
