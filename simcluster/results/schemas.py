"""Output schemas (see docs/outputs.md). Bump SCHEMA_VERSION when a column changes meaning or type."""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"  # 2: requests.restarts

REQUESTS = pa.schema([
    ("request_id", pa.int64()),
    ("arrival_s", pa.float64()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cached_tokens", pa.int64()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("prefill_instance", pa.string()),
    ("decode_instance", pa.string()),
    ("prefill_start_s", pa.float64()),
    ("first_token_s", pa.float64()),
    ("kv_transfer_start_s", pa.float64()),
    ("kv_transfer_end_s", pa.float64()),
    ("finish_s", pa.float64()),
    ("queue_s", pa.float64()),
    ("ttft_s", pa.float64()),
    ("tpot_s", pa.float64()),
    ("e2e_s", pa.float64()),
    ("preemptions", pa.int64()),
    ("restarts", pa.int64()),  # reroutes after an instance failure (failures.on_failure: reroute)
])

STEPS = pa.schema([
    ("start_s", pa.float64()),
    ("instance", pa.string()),
    ("role", pa.string()),
    ("phase", pa.string()),  # prefill | mixed | decode
    ("num_steps", pa.int64()),  # >1: a run of identical-batch decode steps
    ("batch_size", pa.int64()),
    ("prefill_tokens", pa.int64()),
    ("decode_tokens", pa.int64()),
    ("context_tokens", pa.int64()),  # Σ decode context at the first step
    ("latency_s", pa.float64()),  # whole step / run
    ("weight_read_s", pa.float64()),
    ("kv_read_s", pa.float64()),
    ("compute_s", pa.float64()),
    ("comm_s", pa.float64()),
    ("other_s", pa.float64()),
])

TIMELINE = pa.schema([
    ("time_s", pa.float64()),
    ("entity", pa.string()),  # pool:<role>, link:<kind>, cluster
    ("metric", pa.string()),
    ("value", pa.float64()),
])
