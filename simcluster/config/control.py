"""Scenario sections for the control loops: provisioning, rate matching, autoscaling, failures.

Every delay a controller pays is a field here, with where its default comes from. Controllers see
only metrics a real controller could scrape (with ``autoscaling.scrape_delay_s``), never the trace
ahead of the clock (docs/control.md).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, NonNegativeInt, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProvisioningSpec(_Model):
    """What it costs to bring an instance up: node allocation + weight loading + warm-up."""

    node_allocation_s: NonNegativeFloat = Field(
        60.0, description="time to get a node from the scheduler/cloud before anything loads, seconds "
        "[INFERRED: Kubernetes pod scheduling on a warm node pool takes tens of seconds; a cold VM minutes]")
    storage_GBps: PositiveFloat = Field(
        5.0, description="weight-loading bandwidth per instance, GB/s (local NVMe or a parallel file system; "
        "a PCIe Gen4 NVMe reads ~7 GB/s [datasheet class], network storage 1-10 GB/s [INFERRED])")
    warmup_s: NonNegativeFloat = Field(
        30.0, description="engine start after the weights are in memory: CUDA graph capture, KV pool "
        "allocation, NCCL set-up, seconds [INFERRED: vLLM logs graph capture in 10-60 s]")
    role_switch: Literal["reload", "warmup"] = Field(
        "warmup", description="what a prefill<->decode role switch pays after draining: 'warmup' keeps the "
        "weights when the layouts match (else reloads), 'reload' always reloads the weights")


class RateMatchingSpec(_Model):
    """The prefill:decode split of a disaggregated deployment (SEED-NOTES §2.3 balance equation)."""

    policy: Literal["none", "fixed", "static_optimal", "dynamic"] = Field(
        "none", description="none: the pools as configured; fixed: `ratio` prefill:decode instances of the "
        "configured total; static_optimal: the balance of prefill and decode request throughput from the "
        "latency table at the FTL/TTL targets, set once at the start; dynamic: re-balanced every `interval_s` "
        "from the observed ISL/OSL mix, moving instances between roles (drain, then reload)")
    ratio: Optional[PositiveFloat] = Field(
        None, description="fixed policy: prefill instances per decode instance")
    ftl_s: Optional[PositiveFloat] = Field(
        None, description="first-token latency target for the balance; default: slo.ttft_s")
    ttl_s: Optional[PositiveFloat] = Field(
        None, description="token-to-token latency target for the balance; default: slo.tpot_s")
    isl: Optional[PositiveInt] = Field(
        None, description="static_optimal: the prompt length planned for; default: the workload's mean (a "
        "planning input, like a capacity plan's traffic forecast)")
    osl: Optional[PositiveInt] = Field(
        None, description="static_optimal: the output length planned for; default: the workload's mean")
    interval_s: PositiveFloat = Field(60.0, description="dynamic: seconds between re-balancing decisions")
    window_s: PositiveFloat = Field(300.0, description="dynamic: observation window of the ISL/OSL mix, seconds")
    min_gain: NonNegativeFloat = Field(
        0.1, description="dynamic: move instances only if the balanced throughput gains at least this fraction "
        "(hysteresis against flapping)")
    max_moves: PositiveInt = Field(1, description="dynamic: at most this many instances change role per decision")

    @model_validator(mode="after")
    def _ratio_needed(self):
        if self.policy == "fixed" and self.ratio is None:
            raise ValueError("rate_matching.policy 'fixed' needs rate_matching.ratio")
        return self


class PoolBounds(_Model):
    min: NonNegativeInt = Field(1, description="never fewer instances (serving or starting)")
    max: PositiveInt = Field(64, description="never more instances (serving or starting)")

    @model_validator(mode="after")
    def _order(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class AutoscalingSpec(_Model):
    """Pools that grow and shrink with load; scale-down drains (no request is dropped)."""

    policy: Literal["none", "throughput", "slo", "queue"] = Field(
        "none", description="throughput: instances each role needs for the observed request rate and length "
        "mix at the latency targets, with `headroom`; slo: +1 instance when the observed p90 TTFT (prefill, "
        "co-located) or TPOT (decode) exceeds its SLO, -1 when below `slo_low` of it; queue: +1 when the mean "
        "queue per instance exceeds `queue_high`, -1 below `queue_low`")
    interval_s: PositiveFloat = Field(30.0, description="seconds between decisions")
    scrape_delay_s: NonNegativeFloat = Field(
        15.0, description="age of the newest metrics a decision sees (Prometheus scrape + evaluation) [INFERRED]")
    window_s: PositiveFloat = Field(120.0, description="metrics window a decision averages over, seconds")
    headroom: PositiveFloat = Field(1.2, ge=1.0, description="throughput: capacity / predicted load kept")
    slo_low: PositiveFloat = Field(0.5, lt=1.0, description="slo: scale down when p90 < slo_low × SLO")
    queue_high: PositiveFloat = Field(4.0, description="queue: waiting requests per instance to scale up")
    queue_low: NonNegativeFloat = Field(0.5, description="queue: waiting requests per instance to scale down")
    cooldown_s: NonNegativeFloat = Field(120.0, description="no scale-down of a role within this long of its last change")
    prefill: PoolBounds = PoolBounds()
    decode: PoolBounds = PoolBounds()
    colocated: PoolBounds = PoolBounds()


FailureKind = Literal["gpu", "instance", "node", "link_down", "link_degrade", "straggler"]


class FailureEvent(_Model):
    """One scheduled fault."""

    at_s: NonNegativeFloat = Field(description="simulated time of the fault, seconds")
    kind: FailureKind = Field(description="gpu | instance | node | link_down | link_degrade | straggler")
    target: str = Field(
        description="instance name (e.g. decode-0) for instance/straggler; node index for node; 'node:gpu' "
        "or a global GPU index for gpu; a link name (timeline entity) or an instance name (its NIC) for links")
    duration_s: Optional[PositiveFloat] = Field(
        None, description="repaired after this long (None: for the rest of the run)")
    factor: PositiveFloat = Field(
        0.5, description="link_degrade: fraction of capacity left; straggler: step-time multiplier (> 1)")


class RandomFailures(_Model):
    """Faults drawn from an exponential time between failures (seeded)."""

    kind: Literal["gpu", "instance", "node"] = Field(description="what fails")
    mtbf_h: PositiveFloat = Field(
        description="mean time between failures of ONE unit (one GPU, instance or node), hours")
    mttr_s: PositiveFloat = Field(
        600.0, description="time to repair, seconds (then the instance is provisioned again)")


class FailuresSpec(_Model):
    """Fault injection and what happens to the requests a fault hits."""

    on_failure: Literal["reroute", "fail"] = Field(
        "reroute", description="requests in flight on a failed instance: reroute (re-prefill prompt + tokens "
        "already streamed on another instance; counted in `restarts`) or fail (status failed)")
    max_restarts: NonNegativeInt = Field(3, description="a request rerouted more often than this fails")
    events: list[FailureEvent] = Field(default_factory=list, description="scheduled faults")
    random: list[RandomFailures] = Field(default_factory=list, description="random faults by MTBF")
