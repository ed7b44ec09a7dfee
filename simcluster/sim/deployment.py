"""From a scenario to the pools the engine runs: layouts, memory plans and step-cost models.

This is the one place where the engine meets ``perf``: the hot loop then only calls the step-cost
model's ``step`` / ``decode_run``.
"""

from __future__ import annotations

import dataclasses

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model
from simcluster.errors import UserError
from simcluster.perf.constant import ConstantStepCost
from simcluster.perf.pipeline import PipelinedStepCost
from simcluster.sim.engine import PoolPlan

ROLES_BY_MODE = {"disaggregated": ("prefill", "decode"), "colocated": ("colocated",)}


def build_pools(scenario, *, cost_cache: dict | None = None, profile=None) -> list[PoolPlan]:
    """The pools of ``scenario``.

    ``cost_cache`` (optional, caller-owned) memoises op tables per (GPU, framework) and step-cost
    models per configuration across calls (validation and sweeps build thousands of similar
    deployments). ``profile`` (a :class:`~simcluster.perf.framework.FrameworkProfile`) replaces the
    framework's default profile when ``serving.framework_profile`` is on.
    """
    from simcluster.perf.layout import Layout
    from simcluster.perf.step_cost import CostSpec, build_step_cost, memory_plan

    sv = scenario.serving
    gpu = get_gpu(scenario.cluster.gpu, field="cluster.gpu")
    model = get_model(scenario.model.name, field="model.name")
    weights = get_format(scenario.model.weights, field="model.weights")
    kv_fmt = get_format(scenario.model.kv_cache, field="model.kv_cache")
    act = get_format(scenario.model.activations, field="model.activations")
    ops = None
    if scenario.cost.source == "calibrated":
        from simcluster.perf.calibration.ops import CalibratedOps

        key = ("ops", gpu.name, sv.framework)
        ops = cost_cache.get(key) if cost_cache is not None else None
        if ops is None:
            ops = CalibratedOps(gpu, framework=sv.framework)
            if cost_cache is not None:
                cost_cache[key] = ops
    if sv.framework_profile and profile is None:
        from simcluster.perf.framework import get_profile

        profile = get_profile(sv.framework, field="serving.framework")
    if not sv.framework_profile:
        profile = None
    if profile is not None and ops is not None:
        from simcluster.perf.framework import FrameworkOps

        fkey = ("framework_ops", gpu.name, sv.framework, profile)
        fops = cost_cache.get(fkey) if cost_cache is not None else None
        if fops is None:
            fops = FrameworkOps(ops, profile, node_gpus=scenario.cluster.gpus_per_node or gpu.gpus_per_node)
            if cost_cache is not None:
                cost_cache[fkey] = fops
        ops = fops

    roles = ROLES_BY_MODE[sv.mode]
    pools_cfg = scenario.pools
    for other in ("prefill", "decode", "colocated"):
        if other not in roles and getattr(pools_cfg, other) is not None:
            raise UserError(f"serving.mode is {sv.mode!r}, which has no {other} pool", where=f"pools.{other}")
    plans = []
    domain = scenario.cluster.nvlink_domain_size or gpu.nvlink_domain_size
    for role in roles:
        spec = getattr(pools_cfg, role)
        if spec is None:
            raise UserError(f"serving.mode {sv.mode!r} needs a {role} pool", where=f"pools.{role}")
        if spec.instances < 1:
            raise UserError("a pool needs at least one instance", where=f"pools.{role}.instances")
        layout = Layout.parse(spec.layout, field=f"pools.{role}.layout")
        layout.validate(model, domain_size=domain, allow_cross_domain=scenario.cluster.allow_cross_domain,
                        field=f"pools.{role}.layout")
        pool_ops = ops
        if spec.moe_a2a != "default":  # the pool's expert exchange picks its expert kernels
            if profile is None or ops is None:
                raise UserError(f"moe_a2a {spec.moe_a2a!r} prices the expert kernels of the framework's deployments, "
                                "which needs serving.framework_profile: true and cost.source: calibrated",
                                where=f"pools.{role}.moe_a2a")
            akey = ("framework_ops", gpu.name, sv.framework, profile, spec.moe_a2a)
            pool_ops = cost_cache.get(akey) if cost_cache is not None else None
            if pool_ops is None:
                pool_ops = ops.with_moe_a2a(spec.moe_a2a)
                if cost_cache is not None:
                    cost_cache[akey] = pool_ops
        cspec = CostSpec(
            gpu=gpu, model=model, weights=weights.name, kv=kv_fmt.name, activations=act.name,
            layout=layout, framework=sv.framework, hop_b=sv.hop_b,
            kv_eviction_budget=scenario.model.kv_eviction_budget, resmoe_keep=scenario.model.resmoe_keep,
            ops=pool_ops, nvlink_domain_size=domain, **({"step_overhead_s": sv.step_overhead_s} if sv.step_overhead_s is not None else {}),
        )
        if profile is not None:
            # the profile owns the per-step overheads; an explicit serving.step_overhead_s still wins
            if sv.step_overhead_s is not None:
                profile = profile.with_(decode_overhead_s=sv.step_overhead_s, decode_overhead_per_seq_s=0.0,
                                        prefill_overhead_s=sv.step_overhead_s, eager_overhead_s=0.0)
            cspec = dataclasses.replace(cspec, step_overhead_s=0.0)
        pm = spec.memory

        def _mem(name):  # the pool's own memory setting, else the serving section's
            v = getattr(pm, name) if pm is not None else None
            return getattr(sv, name) if v is None else v

        free_fraction = _mem("kv_free_memory_fraction") or (profile.kv_fraction_of_free if profile is not None
                                                            else None)
        util = 1.0 if free_fraction else _mem("gpu_memory_utilization")
        reserve_gb = _mem("activation_reserve_gb")
        mkey = ("memory", cspec, util, reserve_gb)
        mem = cost_cache.get(mkey) if cost_cache is not None else None
        if mem is None:
            mem = memory_plan(cspec, gpu_memory_utilization=util,
                              activation_reserve_bytes=reserve_gb * 1e9, field=f"pools.{role}")
            if cost_cache is not None:
                cost_cache[mkey] = mem
        if free_fraction:  # the framework's KV pool is a share of the memory left after the weights
            mem = dataclasses.replace(mem, kv_capacity_tokens=int(mem.kv_capacity_tokens * free_fraction),
                                      kv_bytes_per_gpu=mem.kv_bytes_per_gpu * free_fraction)
        if pm is not None and pm.max_kv_tokens and pm.max_kv_tokens < mem.kv_capacity_tokens:
            share = pm.max_kv_tokens / mem.kv_capacity_tokens
            mem = dataclasses.replace(mem, kv_capacity_tokens=int(pm.max_kv_tokens),
                                      kv_bytes_per_gpu=mem.kv_bytes_per_gpu * share)
        if scenario.cost.source == "constant":
            cost = ConstantStepCost(scenario.cost.constant_step_s)
        else:
            ckey = ("cost", cspec, profile)
            cost = cost_cache.get(ckey) if cost_cache is not None else None
            if cost is None:
                cost = build_step_cost(cspec)
                if layout.pp > 1:  # micro-batches in flight across the stages
                    cost = PipelinedStepCost(cost, layout.pp)
                if profile is not None:
                    from simcluster.perf.framework import ScheduledStepCost, model_kind

                    cost = ScheduledStepCost(cost, profile, dp=layout.dp, gpu=gpu.name, kind=model_kind(model),
                                             weights=weights.name)
                if cost_cache is not None:
                    cost_cache[ckey] = cost
        peak_flops, _ = gpu.flops_for(get_format(act.name).compute_class)
        plans.append(PoolPlan(
            role=role, spec=spec, gpus_per_instance=layout.gpus, cost=cost,
            kv_capacity_tokens=int(sv.kv_capacity_tokens or mem.kv_capacity_tokens),
            kv_bytes_per_token=model.kv_bytes_per_token(kv_fmt.bytes_per_element),
            peak_flops=peak_flops, peak_bw=gpu.mem_bw_Bps, weight_bytes=mem.weight_bytes_total,
        ))
    return plans
