"""The scenario: a typed, validated description of one simulation.

Every section is a pydantic model with ``extra="forbid"``: an unknown key is an error that names its
dotted path. Defaults are part of the schema; the resolved scenario (every default filled in) is
stored in the metadata of every output file.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, NonNegativeFloat, NonNegativeInt


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TopologySpec(_Model):
    """Racks and the scale-out fabric: nodes in racks under a leaf, racks joined by spines (docs/topology.md)."""

    racks: Optional[PositiveInt] = Field(
        None, description="racks (one leaf group each); default: as many as the nodes need")
    nodes_per_rack: Optional[PositiveInt] = Field(
        None, description="nodes behind one leaf; default: one NVLink domain when it spans nodes (NVL72: 18 "
        "trays of 4 GPUs), else 4 nodes [INFERRED: four 10.2 kW DGX/HGX H100 nodes fill a ~40 kW rack; "
        "SEED-NOTES Splitwise DGX-H100 TDP]")
    placement: Literal["pack", "spread"] = Field(
        "pack", description="pack: first fit, filling rack 0 first (KV stays inside racks); spread: each "
        "instance to the rack with the most free GPUs (pools spread over racks, more cross-rack traffic)")
    fabric_link_gbps: Optional[PositiveFloat] = Field(
        None, description="line rate of one leaf-spine link, Gbit/s; default: the NIC line rate [INFERRED: "
        "DGX SuperPOD fabrics run leaf-spine at the NIC speed, 400 Gb/s NDR]")
    oversubscription: float = Field(
        1.0, ge=1.0, description="leaf oversubscription: a rack's uplink capacity is its NICs' line rate / "
        "this, rounded up to whole fabric links; 1 = non-blocking (DGX SuperPOD reference fabrics)")
    hop_latency_s: NonNegativeFloat = Field(
        5e-7, description="latency per switch hop, seconds: 1 hop inside a rack, 3 (leaf-spine-leaf) "
        "across racks [INFERRED: switch port-to-port 0.1-1 us (InfiniBand ~0.2, Ethernet ~0.6) plus fibre "
        "at 5 ns/m]")


class ClusterSpec(_Model):
    """Hardware: GPUs grouped in nodes; nodes grouped in NVLink domains and racks; NICs to a scale-out fabric."""

    gpu: str = "h200_sxm"
    nodes: Optional[PositiveInt] = Field(
        None, description="number of nodes; default: as many as the pools need"
    )
    gpus_per_node: Optional[PositiveInt] = Field(None, description="default: the GPU's catalog value")
    nvlink_domain_size: Optional[PositiveInt] = Field(
        None, description="GPUs per NVLink domain; default: the GPU's catalog value (8 HGX, 72 NVL72)"
    )
    nic_gbps: Optional[PositiveFloat] = Field(
        None, description="line rate of one scale-out NIC, Gbit/s one direction; default: the catalog's NIC "
        "per GPU (400 for ConnectX-7)"
    )
    nics_per_gpu: PositiveFloat = Field(
        1.0, description="scale-out NICs per GPU (DGX H100/H200/B200: 8 ConnectX-7 for 8 GPUs, SEED-NOTES §7; "
        "0.5 for 4 NICs per 8-GPU node)"
    )
    nic_efficiency: PositiveFloat = Field(
        0.87,
        le=1.0,
        description="achieved fraction of a NIC's line rate (protocol efficiency); 0.87 from Mooncake's 87 GB/s "
        "on 4x200 Gb/s (SEED-NOTES M-1; docs/topology.md)",
    )
    nic_max_gbps: Optional[PositiveFloat] = Field(
        190.0, description="ceiling on the achieved rate of one NIC, Gbit/s (host path: PCIe, memory, transfer "
        "engine); 190 from Mooncake's 190 GB/s on 8x400 Gb/s (SEED-NOTES M-1); null: no ceiling"
    )
    nvlink_efficiency: PositiveFloat = Field(
        0.8, le=1.0, description="achieved fraction of NVLink bandwidth (SEED-NOTES §7, INFERRED)"
    )
    transfer_latency_s: NonNegativeFloat = Field(
        20e-6, description="fixed set-up latency per KV transfer (RDMA handshake), seconds [INFERRED]"
    )
    allow_cross_domain: bool = Field(
        False, description="allow one instance to span NVLink domains (TP over InfiniBand); its collectives "
        "then load its NICs and contend with KV transfers"
    )
    price_per_gpu_hour: Optional[NonNegativeFloat] = Field(
        None, description="USD per GPU-hour for the cost summary; default: the GPU's catalog value"
    )
    topology: TopologySpec = TopologySpec()


class ModelSection(_Model):
    """The model and its number formats (bits per element include block scales: docs/perf.md)."""

    name: str = Field("llama-3.1-70b", description="catalog name (see `simcluster cost --help`) or path to a Hugging Face config.json")
    weights: str = Field("fp8", description="number format of the weights")
    kv_cache: str = Field("fp8", description="number format of the KV cache")
    activations: str = Field("bf16", description="number format of activations (and the math)")
    kv_eviction_budget: Optional[PositiveInt] = Field(
        None, description="token-eviction budget per sequence (H2O/SnapKV/StreamingLLM style); None: keep all"
    )
    resmoe_keep: float = Field(
        1.0, gt=0.0, le=1.0, description="ResMoE: fraction of expert parameters kept (1.0 = uncompressed)"
    )


class AttentionDPBalanceSpec(_Model):
    """TRT-LLM's context balancing across attention-DP ranks (``attention_dp_config`` with
    ``enable_balance: true``): new prompts wait until every rank has one, for at most
    ``timeout_iters`` iterations, so that the ranks, which step in lockstep for the expert layers,
    prefill together. Defaults: TRT-LLM's ``AttentionDpConfig``."""

    timeout_iters: PositiveInt = Field(
        50, description="iterations after which waiting prompts are scheduled anyway (TRT-LLM default 50)"
    )
    batching_wait_iters: NonNegativeInt = Field(
        10, description="once every rank has a prompt, iterations to wait for more (TRT-LLM default 10)"
    )


class BatchWaitSpec(_Model):
    """TRT-LLM's delayed batching of prompts (``batch_wait_timeout_iters``,
    ``batch_wait_max_tokens_ratio``; instances without attention DP): while sequences decode, new
    prompts wait until the step would carry ``max_tokens_ratio`` of the token budget, for at most
    ``timeout_iters`` iterations. TRT-LLM's defaults (0, 0) leave it off."""

    timeout_iters: NonNegativeInt = Field(0, description="iterations a prompt may be held back")
    max_tokens_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="prompts go once prompt + decode tokens reach this share of the budget"
    )


class PoolMemorySpec(_Model):
    """A pool's own memory settings (disaggregated deployments set them per side); each unset field
    takes the ``serving`` section's."""

    gpu_memory_utilization: Optional[float] = Field(
        None, gt=0.0, le=1.0, description="this pool's serving.gpu_memory_utilization")
    activation_reserve_gb: Optional[NonNegativeFloat] = Field(
        None, description="this pool's serving.activation_reserve_gb")
    kv_free_memory_fraction: Optional[float] = Field(
        None, gt=0.0, le=1.0, description="this pool's serving.kv_free_memory_fraction")
    max_kv_tokens: Optional[PositiveInt] = Field(
        None, description="a cap on each instance's KV pool, tokens: the pool is the smaller of this and what "
        "memory holds (SGLang --max-total-tokens × the instance's attention-DP ranks); null = no cap")


class PoolSpec(_Model):
    """A pool of identical instances. One instance = one model replica on ``layout`` GPUs."""

    instances: NonNegativeInt = Field(1, description="instances in the pool")
    layout: str = Field("tp=1", description="parallel layout, e.g. tp=8, tp=4,pp=2, dp=8,ep=8, kvp=4,tpa=8,tpf=32")
    max_num_seqs: PositiveInt = Field(256, description="max sequences in a batch")
    max_num_batched_tokens: PositiveInt = Field(8192, description="token budget per step (prefill chunks + decodes)")
    chunked_prefill: bool = Field(True, description="split long prompts into chunks under the token budget")
    max_queue: PositiveInt = Field(
        4096, description="bounded waiting queue per instance; a request finding every queue full is rejected"
    )
    attention_dp_balance: Optional[AttentionDPBalanceSpec] = Field(
        None, description="TRT-LLM attention-DP context balancing (layouts with dp > 1); null = off"
    )
    batch_wait: Optional[BatchWaitSpec] = Field(
        None, description="TRT-LLM delayed batching of prompts (layouts without dp); null = off"
    )
    memory: Optional[PoolMemorySpec] = Field(
        None, description="this pool's memory settings where they differ from the serving section's "
        "(e.g. the prefill and decode workers of a disaggregated recipe); null = the serving section's")
    moe_a2a: Literal["default", "deepep"] = Field(
        "default", description="how the pool's expert-parallel MoE layers exchange tokens and which expert "
        "kernels they run: default = the framework's own MoE kernel; deepep = DeepEP dispatch/combine with "
        "DeepGEMM grouped GEMMs (SGLang --moe-a2a-backend deepep, vLLM --all2all-backend deepep_*): "
        "block-FP8 experts on Blackwell are priced from the measured DeepGEMM table (docs/perf.md)")


class PoolsSpec(_Model):
    """The pools of instances: prefill + decode (disaggregated) or colocated."""

    prefill: Optional[PoolSpec] = None
    decode: Optional[PoolSpec] = None
    colocated: Optional[PoolSpec] = None


class ServingSpec(_Model):
    """How the serving framework runs the pools."""

    framework: Literal["vllm", "sglang", "trtllm"] = Field(
        "vllm", description="serving framework: selects its measured kernels and scheduler defaults")
    mode: Literal["disaggregated", "colocated"] = Field(
        "disaggregated", description="disaggregated: prefill and decode pools with KV transfer; colocated: one pool")
    block_size: PositiveInt = Field(16, description="tokens per paged-KV block")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="fraction of GPU memory the engine may use")
    activation_reserve_gb: NonNegativeFloat = Field(
        4.0, description="GPU memory per GPU kept for activations, CUDA graphs and NCCL buffers, GB"
    )
    kv_free_memory_fraction: Optional[float] = Field(
        None, gt=0.0, le=1.0,
        description="KV pool = this share of the GPU memory left after the weights and activation_reserve_gb "
        "(TRT-LLM kv_cache_config.free_gpu_memory_fraction); replaces gpu_memory_utilization; default: the "
        "framework profile's with framework_profile (TRT-LLM 0.9), else unset")
    step_overhead_s: Optional[NonNegativeFloat] = Field(
        None, description="CPU/scheduler overhead per engine step; default: the cost model's framework value"
    )
    prefix_caching: bool = Field(True, description="reuse KV of shared prompt prefixes (needs hash ids)")
    kv_capacity_tokens: Optional[PositiveInt] = Field(
        None, description="override the KV-cache capacity per instance (tokens); default: from GPU memory "
        "minus weights and the activation reserve"
    )
    router: Literal["round_robin", "least_outstanding", "prefix_aware"] = Field(
        "least_outstanding", description="routing policy across a pool's instances (docs/scenarios.md)")
    hop_b: bool = Field(True, description="Helix HOP-B overlap of the All-to-All with attention")
    first_token_at: Literal["prefill_end", "kv_landed", "first_decode_step"] = Field(
        "first_decode_step",
        description="disaggregated: when the client sees the first token. prefill_end: streamed by the "
        "prefill instance as soon as it is sampled; kv_landed: forwarded by the decode instance once the KV "
        "arrived; first_decode_step: produced by the decode instance's first step after the KV arrived "
        "(vLLM's NIXL/P2P connectors recompute the last prompt token there; docs/metrics.md)",
    )
    kv_admission: Literal["on_demand", "reserve_full"] = Field(
        "on_demand",
        description="on_demand: admit while the prompt's KV fits and grow per token, preempting under "
        "pressure (vLLM, SGLang); reserve_full: admit only if the KV of every admitted request's whole "
        "output still fits, so nothing is ever preempted (TensorRT-LLM's GUARANTEED_NO_EVICT)",
    )
    kv_transfer: Literal["after_prefill", "layerwise"] = Field(
        "after_prefill", description="after_prefill: the KV leaves when the prefill ends; layerwise: it streams "
        "to a decode instance chosen when the prefill starts, at most as fast as the prefill produces it, the "
        "last layer's share after the prefill (docs/topology.md)")
    framework_profile: bool = Field(
        False,
        description="apply the framework's scheduler profile (perf/framework.py): CUDA-graph batch padding, "
        "per-step CPU overheads, fused or sequential mixed batching; the step overhead then comes from the "
        "profile (serving.step_overhead_s still overrides it)",
    )


class CostSection(_Model):
    """Where step latencies come from."""

    source: Literal["roofline", "calibrated", "constant"] = Field(
        "calibrated",
        description="calibrated: measured op tables (roofline x fitted efficiency outside them); roofline: "
        "analytic only; constant: every step takes constant_step_s (for queueing experiments)",
    )
    constant_step_s: PositiveFloat = Field(0.01, description="step time of the constant cost model, seconds")


class SLOSpec(_Model):
    """Service-level objectives for goodput and attainment (null: not constrained)."""

    ttft_s: Optional[PositiveFloat] = Field(2.0, description="time to first token bound, seconds")
    tpot_s: Optional[PositiveFloat] = Field(0.1, description="time per output token bound, seconds")
    e2e_s: Optional[PositiveFloat] = Field(None, description="end-to-end latency bound, seconds")


class OutputSpec(_Model):
    """What is written."""

    steps: bool = Field(True, description="write steps.parquet (one row per step or run of decode steps)")
    timeline_interval_s: Optional[PositiveFloat] = Field(
        None, description="sampling interval of timeline.parquet; default: span / 2000, at least 1 s"
    )
    chunk_rows: PositiveInt = Field(65536, description="rows buffered before a parquet row group is written")


class ClientsSpec(_Model):
    """How the workload's requests are issued (like a benchmark client's flags)."""

    max_concurrency: Optional[PositiveInt] = Field(
        None,
        description="at most this many requests in flight: a request due while the limit is reached is "
        "sent when one finishes (its arrival_s is the send time). With every arrival at 0 this is a "
        "closed loop of N clients, as in `vllm bench serve --max-concurrency N`",
    )


class RunSpec(_Model):
    """Run control."""

    max_sim_time_s: Optional[PositiveFloat] = Field(
        None, description="stop the clock here; requests still in flight end as 'unfinished'"
    )


from simcluster.workload.spec import WorkloadSpec  # noqa: E402  (after the models it does not need)
from simcluster.config.control import (  # noqa: E402
    AutoscalingSpec, FailuresSpec, ProvisioningSpec, RateMatchingSpec,
)


class Scenario(_Model):
    """A whole simulation: hardware, model, serving, pools, costs, workload, SLOs, outputs."""

    name: str = Field("scenario", description="names the default output folder")
    description: str = Field("", description="free text, kept in the outputs' metadata")
    seed: NonNegativeInt = Field(0, description="seed of the run's random streams (same seed, same bytes)")
    cluster: ClusterSpec = ClusterSpec()
    model: ModelSection = ModelSection()
    serving: ServingSpec = ServingSpec()
    pools: PoolsSpec = PoolsSpec()
    cost: CostSection = CostSection()
    workload: WorkloadSpec = Field(description="requests: a trace or a synthetic generator (docs/workloads.md)")
    clients: ClientsSpec = ClientsSpec()
    slo: SLOSpec = SLOSpec()
    provisioning: ProvisioningSpec = ProvisioningSpec()
    rate_matching: RateMatchingSpec = RateMatchingSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    failures: FailuresSpec = FailuresSpec()
    output: OutputSpec = OutputSpec()
    run: RunSpec = RunSpec()
