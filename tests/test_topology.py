"""Cluster topology: placement on racks, routes, oversubscribed uplinks, the Mooncake calibration of NIC
efficiency, KV layout conversion, layer-wise streaming and collectives on shared NICs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import simpy

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model
from simcluster.config.scenario import ClusterSpec, Scenario
from simcluster.errors import UserError
from simcluster.perf.layout import Layout
from simcluster.results.schemas import REQUESTS
from simcluster.sim.cluster import place
from simcluster.sim.collective_traffic import CollectiveTraffic
from simcluster.sim.kv_transfer import conversion_plan
from simcluster.sim.network import Network
from simcluster.sim.topology import GBIT_BYTES, Fabric, Topology
from simcluster.validate.simulate import run_in_memory
from simcluster.workload.workload import Workload


class _Inst:
    """What the topology needs of an instance: a name, its GPUs, a links dict."""

    def __init__(self, name: str, gpus: int, num_running: int = 0) -> None:
        self.name, self.gpus, self.links, self.num_running = name, gpus, {}, num_running


def _topology(**cluster) -> Topology:
    c = ClusterSpec.model_validate(cluster)
    return Topology.from_scenario(c, get_gpu(c.gpu))


def _transfer_time(net: Network, env, route, size: float, cap: float) -> float:
    done = {}
    net.start(list(route.links), size, lambda f: done.__setitem__("t", env.now), cap=cap, latency_s=route.latency_s)
    env.run()
    return done["t"]


# ---------------------------------------------------------------------------- routes
def test_routes_follow_the_domain_rack_spine_hierarchy_with_their_hop_latencies():
    topo = _topology(gpu="h200_sxm", topology={"nodes_per_rack": 2, "hop_latency_s": 1e-6}, transfer_latency_s=2e-5)
    a, b, c, d = (_Inst(n, 4) for n in "abcd")
    topo.attach(a, 0)  # domain 0 (node 0), rack 0
    topo.attach(b, 0)  # the same HGX node
    topo.attach(c, 1)  # node 1, still rack 0
    topo.attach(d, 2)  # node 2: rack 1
    r = topo.path(a, b)
    assert r.kind == "nvlink" and r.links == (a.links["nvlink_out"], b.links["nvlink_in"])
    assert r.latency_s == pytest.approx(2e-5)
    r = topo.path(a, c)
    assert r.kind == "rack" and r.links == (a.links["nic_out"], c.links["nic_in"])
    assert r.latency_s == pytest.approx(2e-5 + 1e-6), "one leaf hop"
    r = topo.path(a, d)
    up, _ = topo.rack_links(0)
    _, down = topo.rack_links(1)
    assert r.kind == "spine" and r.links == (a.links["nic_out"], up, down, d.links["nic_in"])
    assert r.latency_s == pytest.approx(2e-5 + 3e-6), "leaf, spine, leaf"
    assert topo.path(a, d) is r, "routes are cached"


def test_link_capacities_come_from_the_per_gpu_rates():
    topo = _topology(gpu="h200_sxm", nic_gbps=400, nics_per_gpu=1, nic_efficiency=0.87, nic_max_gbps=None,
                     nvlink_efficiency=0.8)
    x = _Inst("x", 4)
    topo.attach(x, 0)
    assert x.links["nic_out"].capacity_Bps == pytest.approx(4 * 0.87 * 50e9)
    assert x.links["nvlink_in"].capacity_Bps == pytest.approx(4 * 0.8 * 450e9)  # H200: NVLink4 450 GB/s/dir


def test_nvl72_racks_are_one_nvlink_domain_by_default():
    f = Fabric.from_cluster(ClusterSpec(gpu="gb200"), get_gpu("gb200"))
    assert (f.domain_size, f.gpus_per_node, f.nodes_per_rack, f.domains_per_rack) == (72, 4, 18, 1)
    f = Fabric.from_cluster(ClusterSpec(gpu="h100_sxm"), get_gpu("h100_sxm"))
    assert (f.domain_size, f.rack_gpus) == (8, 32)


def test_a_rack_must_hold_whole_nvlink_domains():
    with pytest.raises(UserError) as e:
        _topology(gpu="gb200", topology={"nodes_per_rack": 9})  # 36 GPUs < one NVL72 domain
    assert e.value.where == "cluster.topology.nodes_per_rack"
    with pytest.raises(UserError) as e:
        _topology(gpu="h200_sxm", nodes=9, topology={"racks": 2, "nodes_per_rack": 4})
    assert e.value.where == "cluster.topology.racks"


# ---------------------------------------------------------------------------- placement
def test_pack_fills_rack_zero_first_and_spread_deals_instances_over_the_racks():
    pools = [("prefill", 2, 4), ("decode", 2, 4)]
    packed, gpus = place(pools, 8, 32, False, domains_per_rack=2, policy="pack")
    assert [(p.role, p.domain, p.rack) for p in packed] == [
        ("prefill", 0, 0), ("prefill", 0, 0), ("decode", 1, 0), ("decode", 1, 0)]
    assert gpus == 32
    spread, _ = place(pools, 8, 32, False, domains_per_rack=2, policy="spread")
    assert [p.rack for p in spread if p.role == "prefill"] == [0, 1]
    assert [p.rack for p in spread if p.role == "decode"] == [0, 1]
    # sized to fit: as many racks as pack would use, here one (16 GPUs, 2 domains of 8 per rack)
    spread_fit, gpus = place(pools, 8, None, False, domains_per_rack=2, policy="spread")
    assert {p.rack for p in spread_fit} == {0} and gpus == 16


def test_placement_errors_keep_their_messages():
    with pytest.raises(UserError, match="allow_cross_domain"):
        place([("decode", 1, 16)], 8, None, False, domains_per_rack=4, policy="spread")
    with pytest.raises(UserError, match="the cluster has 16 GPUs") as e:
        place([("prefill", 3, 8)], 8, 16, False, domains_per_rack=1, policy="spread")
    assert e.value.where == "cluster.nodes"


def test_a_cross_domain_instance_takes_whole_domains_inside_one_rack_when_spread():
    out, _ = place([("prefill", 1, 4), ("decode", 1, 16)], 8, 64, True, domains_per_rack=4, policy="spread")
    dec = out[1]
    assert dec.span == 2 and dec.domain // 4 == (dec.domain + 1) // 4, "both domains in one rack"


# ---------------------------------------------------------------------------- contention on the fabric
@pytest.mark.parametrize("ratio", [1.0, 4.0])
def test_cross_rack_transfers_share_the_rack_uplink(ratio):
    # 2 racks of one HGX node; four 2-GPU senders in rack 0 each send to a 2-GPU receiver in rack 1
    topo = _topology(gpu="h200_sxm", nic_gbps=400, nic_efficiency=0.87, nic_max_gbps=190, transfer_latency_s=0.0,
                     topology={"nodes_per_rack": 1, "oversubscription": ratio, "hop_latency_s": 0.0})
    env = simpy.Environment()
    net = Network(env)
    senders = [_Inst(f"p{i}", 2) for i in range(4)]
    receivers = [_Inst(f"d{i}", 2) for i in range(4)]
    for s in senders:
        topo.attach(s, 0)
    for r in receivers:
        topo.attach(r, 1)
    nic = 2 * min(0.87 * 50e9, 190 * GBIT_BYTES)  # one 2-GPU instance's NICs
    rack_line = 8 * 50e9  # 8 NICs of 400 Gb/s
    uplink = math.ceil(rack_line / ratio / 50e9) * 50e9 * 0.87  # whole 400 Gb/s links, payload
    assert topo.rack_links(0)[0].capacity_Bps == pytest.approx(uplink)
    size = 10e9
    done = []
    for s, r in zip(senders, receivers):
        net.start(list(topo.path(s, r).links), size, lambda f: done.append(env.now))
    env.run()
    expected = size / min(nic, uplink / 4)
    assert done == pytest.approx([expected] * 4, rel=1e-9)
    if ratio == 1.0:
        assert expected == pytest.approx(size / nic), "non-blocking: each gets its NICs' rate"
    else:
        assert uplink / 4 < nic, "4:1 oversubscribed: the uplink is the bottleneck, a quarter each"


# ---------------------------------------------------------------------------- Mooncake M-1
@pytest.mark.parametrize("nics, nic_gbps, measured_GBps", [(8, 400, 190.0), (4, 200, 87.0)])
def test_link_efficiency_reproduces_mooncake_transfer_rates(nics, nic_gbps, measured_GBps):
    """SEED-NOTES M-1: Mooncake moved 40 GB at 190 GB/s over 8 x 400 Gb/s and 87 GB/s over 4 x 200 Gb/s.
    Between two 8-GPU nodes (one NIC per GPU, or one per two GPUs), with the default efficiency model
    (0.87 of line rate, at most 190 Gb/s per NIC), the simulated rate is within 3 %."""
    topo = _topology(gpu="h100_sxm", nic_gbps=nic_gbps, nics_per_gpu=nics / 8)
    env = simpy.Environment()
    net = Network(env)
    a, b = _Inst("a", 8), _Inst("b", 8)
    topo.attach(a, 0)
    topo.attach(b, 1)
    route = topo.path(a, b)
    plan = conversion_plan(Layout.parse("tp=8"), Layout.parse("tp=8"), get_model("llama-3.1-70b"))
    t = _transfer_time(net, env, route, 40e9, route.per_gpu_Bps * min(plan.senders, plan.receivers))
    assert 40e9 / t / 1e9 == pytest.approx(measured_GBps, rel=0.03)


def test_one_efficiency_number_cannot_fit_both_mooncake_rates():
    # with rate = eta x line, the two setups' rates differ by the line-rate ratio, 4x; measured: 2.18x
    line_ratio = (8 * 400) / (4 * 200)
    assert 190.0 / 87.0 == pytest.approx(2.18, abs=0.01) and line_ratio == 4.0
    # and a fixed per-transfer time t0 plus eta would need eta > 1 (docs/topology.md)
    t1, t2 = 40 / 190, 40 / 87  # s
    eta = 40 * (1 / 100 - 1 / 400) / (t2 - t1)  # from t = t0 + 40 GB / (eta x line)
    assert eta > 1.0


# ---------------------------------------------------------------------------- layout conversion
def _owners(layout: Layout, layers: int, k: int, blocks: int, contiguous: bool):
    """Brute force: the (layer, head, block) cells each GPU of one replica holds."""
    a = min(layout.tpa, k)
    r = layout.tpa // a
    out = []
    for stage, t, s in itertools.product(range(layout.pp), range(layout.tpa), range(layout.kvp)):
        ls = range(stage * layers // layout.pp, (stage + 1) * layers // layout.pp)
        group = t // r
        hs = range(group * k // a, (group + 1) * k // a)
        if contiguous:
            bs = range(s * blocks // layout.kvp, (s + 1) * blocks // layout.kvp)
        else:
            bs = range(s, blocks, layout.kvp)  # Helix: blocks dealt round robin
        out.append({(l, h, b) for l in ls for h in hs for b in bs})
    return out


@pytest.mark.parametrize("model, src, dst", [
    ("llama-3.1-70b", "tp=8", "tp=2"),
    ("llama-3.1-70b", "tp=2", "tp=8"),
    ("llama-3.1-70b", "tp=8", "kvp=4,tpa=2"),
    ("llama-3.1-70b", "tp=4,pp=2", "tp=2,pp=3"),
    ("llama-3.1-405b", "tp=16", "tp=4"),
    ("deepseek-r1", "tp=8,ep=8", "dp=8,ep=8"),
    ("deepseek-r1", "dp=8,ep=8", "tp=8,ep=8"),
    ("deepseek-r1", "tp=8,ep=8", "kvp=8,tpa=1,ep=8"),
])
def test_conversion_plan_matches_a_brute_force_count_of_overlapping_shards(model, src, dst):
    m = get_model(model)
    ls, ld = Layout.parse(src), Layout.parse(dst)
    k = 1 if m.is_mla else m.num_kv_heads
    layers, blocks = 12, 48  # divisible by every split above
    have = _owners(ls, layers, k, blocks, contiguous=True)
    need = _owners(ld, layers, k, blocks, contiguous=False)
    flows = sum(1 for h, n in itertools.product(have, need) if h & n)
    unique = layers * k * blocks
    plan = conversion_plan(ls, ld, m)
    assert plan.flows == flows
    assert plan.wire_factor == pytest.approx(sum(len(n) for n in need) / unique)
    assert (plan.senders, plan.receivers) == (len(have), len(need))


# ---------------------------------------------------------------------------- the engine's transfers
def _scenario(**over) -> dict:
    data = {
        "cluster": {"gpu": "h200_sxm", "topology": {"nodes_per_rack": 2}},  # two HGX nodes behind a leaf
        "model": {"name": "llama-3.1-8b", "weights": "bf16", "kv_cache": "bf16"},
        "serving": {"mode": "disaggregated", "prefix_caching": False, "first_token_at": "prefill_end"},
        "pools": {"prefill": {"instances": 1, "layout": "tp=8"}, "decode": {"instances": 1, "layout": "tp=2"}},
        "cost": {"source": "roofline"},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "constant", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "output": {"steps": False},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return data


def _run(data: dict, isl, osl, gap_s: float):
    isl, osl = np.atleast_1d(isl), np.atleast_1d(osl)
    n = max(len(isl), len(osl))
    w = Workload(np.arange(n) * gap_s, np.resize(isl, n), np.resize(osl, n), source="test")
    sc = Scenario.model_validate(data)
    rows, engine, stats = run_in_memory(sc, w)
    df = pd.DataFrame(rows, columns=REQUESTS.names).sort_values("request_id").reset_index(drop=True)
    return df, engine


def test_a_transfer_between_layouts_is_limited_by_the_fewer_gpus_of_the_two_sides():
    # prefill tp=8 (8 senders) -> decode tp=2 (2 receivers) on different nodes: 2 NICs' worth
    df, eng = _run(_scenario(), isl=[4096, 8192], osl=2, gap_s=5.0)
    f = eng.topology.fabric
    m = get_model("llama-3.1-8b")
    size = m.kv_bytes_per_token(2.0) * df.input_tokens
    expected = f.setup_latency_s + f.hop_latency_s + size / (2 * f.nic_Bps_per_gpu)
    assert (df.kv_transfer_end_s - df.first_token_s).to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-6)
    assert eng.kv_bytes_transferred == pytest.approx(size.sum())
    nic = sum(l.bytes_carried for l in eng.topology.links_of_kind("nic"))
    assert nic == pytest.approx(2 * size.sum(), rel=1e-6), "every byte leaves one NIC and enters another"


def test_dp_attention_sends_from_the_one_replica_that_holds_the_request():
    # DeepSeek-R1, prefill dp=8 (one GPU per replica) -> decode dp=8: one NIC each side, not eight
    data = _scenario(cluster={"gpu": "gb200", "topology": {"nodes_per_rack": 18, "racks": 2},
                              "nvlink_domain_size": 8},
                     model={"name": "deepseek-r1", "weights": "fp4", "kv_cache": "fp8", "activations": "fp8"},
                     pools={"prefill": {"instances": 1, "layout": "dp=8,ep=8"},
                            "decode": {"instances": 1, "layout": "dp=8,ep=8"}})
    df, eng = _run(data, isl=4096, osl=2, gap_s=5.0)
    f = eng.topology.fabric
    size = get_model("deepseek-r1").kv_bytes_per_token(1.0) * 4096
    expected = f.setup_latency_s + f.hop_latency_s + size / f.nic_Bps_per_gpu
    assert float(df.kv_transfer_end_s[0] - df.first_token_s[0]) == pytest.approx(expected, rel=1e-6)


def test_layerwise_streaming_ends_no_later_than_after_prefill_and_no_earlier_than_the_last_layer():
    isl = [2048, 8192, 16384, 30000]
    # prefill tp=8 fills node 0, decode tp=2 sits on node 1: the KV crosses 2 NICs of 100 Gb/s
    common = dict(pools={"prefill": {"instances": 1, "layout": "tp=8", "max_num_batched_tokens": 4096},
                         "decode": {"instances": 1, "layout": "tp=2"}},
                  cluster={"gpu": "h200_sxm", "topology": {"nodes_per_rack": 2}, "nic_gbps": 100})
    after, eng = _run(_scenario(**common), isl=isl, osl=4, gap_s=10.0)
    lw, eng_lw = _run(_scenario(**common, serving={"kv_transfer": "layerwise"}), isl=isl, osl=4, gap_s=10.0)
    assert (after.status == "completed").all() and (lw.status == "completed").all()
    assert lw.first_token_s.to_numpy() == pytest.approx(after.first_token_s.to_numpy()), "same prefills"
    f = eng_lw.topology.fabric
    rate = 2 * f.nic_Bps_per_gpu
    latency = f.setup_latency_s + f.hop_latency_s
    size = get_model("llama-3.1-8b").kv_bytes_per_token(2.0) * lw.input_tokens
    last_layer = size / 32
    # after_prefill, uncontended: exactly latency + size / rate after the prefill
    assert (after.kv_transfer_end_s - after.first_token_s).to_numpy() == pytest.approx(
        (latency + size / rate).to_numpy(), rel=1e-6)
    assert (lw.kv_transfer_end_s <= after.kv_transfer_end_s + 1e-9).all(), "streaming never ends later"
    floor = lw.first_token_s + latency + last_layer / rate
    assert (lw.kv_transfer_end_s >= floor - 1e-9).all(), "the last layer leaves after the prefill"
    assert (lw.kv_transfer_start_s < lw.first_token_s).all(), "the stream starts during the prefill"
    # a long prompt on a slow NIC: the stream hides most of the transfer behind the prefill
    long = lw.input_tokens == 30000
    saved = (after.kv_transfer_end_s - lw.kv_transfer_end_s)[long].iloc[0]
    assert saved > 0.5 * (size / rate)[long].iloc[0]


def test_cross_rack_kv_bytes_cross_both_rack_links_and_the_timeline_reports_link_classes(tmp_path):
    from simhelp import run

    data = _scenario(cluster={"gpu": "h200_sxm", "topology": {"nodes_per_rack": 1, "racks": 2, "placement": "spread"}},
                     pools={"prefill": {"instances": 2, "layout": "tp=4"},
                            "decode": {"instances": 2, "layout": "tp=4"}},
                     workload={"num_requests": 60, "arrival": {"process": "poisson", "rate_per_s": 20.0},
                               "input_tokens": {"dist": "fixed", "value": 3000},
                               "output_tokens": {"dist": "fixed", "value": 20}},
                     output={"steps": False, "timeline_interval_s": 0.05})
    summary, req, out = run(tmp_path, data)
    tl = pd.read_parquet(out / "timeline.parquet")
    links = tl[tl.entity.str.startswith("link:")]
    assert {"link:nic", "link:nvlink", "link:rack_uplink", "link:rack_downlink"} <= set(links.entity)
    util = links[links.metric.str.startswith("utilisation")]
    assert (util.value >= 0).all() and (util.value <= 1 + 1e-9).all(), "utilisation never exceeds capacity"
    for ent, g in links[links.metric == "bytes_carried"].groupby("entity"):
        assert (np.diff(g.sort_values("time_s").value.to_numpy()) >= -1e-3).all(), f"{ent} bytes only grow"
    # spread: prefill-i and decode-i share rack i; a request crossing racks pays the spine
    size = get_model("llama-3.1-8b").kv_bytes_per_token(2.0) * 3000
    cross = (req.prefill_instance.str[-1] != req.decode_instance.str[-1]).sum()
    assert 0 < cross < len(req)
    last = links[links.metric == "bytes_carried"].groupby("entity").value.max()
    assert last["link:rack_uplink"] == pytest.approx(last["link:rack_downlink"])
    assert last["link:rack_uplink"] <= cross * size * (1 + 1e-9)
    assert summary["kv_transfer_bytes"] == pytest.approx(len(req) * size)


# ---------------------------------------------------------------------------- collectives
@pytest.mark.parametrize("f_comm, kv_share", [(0.3, 0.7), (0.6, 0.5)])
def test_collectives_of_a_cross_domain_instance_contend_with_kv_on_its_nics(f_comm, kv_share):
    # NVLink domains of 4 GPUs: an 8-GPU TP group spans two and runs its all-reduce over its NICs
    topo = _topology(gpu="h200_sxm", nvlink_domain_size=4, nic_max_gbps=None, transfer_latency_s=0.0,
                     topology={"hop_latency_s": 0.0})
    env = simpy.Environment()
    net = Network(env)
    wide, src = _Inst("wide", 8, num_running=3), _Inst("src", 4)
    topo.attach(wide, 0, span=2)
    topo.attach(src, 2)
    coll = CollectiveTraffic(net, topo)
    coll.add(wide, f_comm)  # this share of each step's time in NIC collectives, at the NICs' rate
    coll.add(src, f_comm)  # a single-domain instance has none
    assert len(coll.entries) == 1
    coll.refresh()
    nic_in = wide.links["nic_in"].capacity_Bps
    src_out = src.links["nic_out"].capacity_Bps
    assert src_out == pytest.approx(nic_in / 2)
    route = topo.path(src, wide)
    t = _transfer_time(net, env, route, 10e9, math.inf)
    # max-min: the KV flow gets what the collectives leave, but never less than an equal share
    assert t == pytest.approx(10e9 / min(src_out, kv_share * nic_in))
    wide.num_running = 0
    coll.refresh()  # idle: no collective traffic
    t0 = env.now
    done = {}
    net.start(list(route.links), 10e9, lambda f: done.__setitem__("t", env.now))
    env.run(until=t0 + 100)
    assert done["t"] - t0 == pytest.approx(10e9 / src_out)


def test_a_cross_domain_decode_instance_loads_its_nics_with_collectives_in_a_run():
    data = _scenario(cluster={"gpu": "h200_sxm", "allow_cross_domain": True},
                     model={"name": "llama-3.1-70b", "weights": "fp8", "kv_cache": "fp8"},
                     pools={"prefill": {"instances": 1, "layout": "tp=8"},
                            "decode": {"instances": 1, "layout": "tp=16"}},
                     output={"steps": False, "timeline_interval_s": 0.05})
    df, eng = _run(data, isl=2000, osl=300, gap_s=0.2)
    wide = eng.pools["decode"][0]
    assert eng.topology.spans_domains(wide) and len(eng.collectives.entries) == 1
    kv = eng.kv_bytes_transferred
    carried_in = wide.links["nic_in"].bytes_carried
    assert carried_in > kv * 1.01, "the decode NICs carried collectives besides the KV"


@pytest.mark.parametrize("nic_gbps", [25, 400])  # slow NICs: streams still on the wire at the prefill's end
def test_layerwise_streaming_under_load_conserves_requests_and_keeps_kv_after_its_prefill(nic_gbps):
    # a busy cluster: prefills share steps, streams wait for decode memory, links are shared
    data = _scenario(pools={"prefill": {"instances": 2, "layout": "tp=2", "max_num_batched_tokens": 2048},
                            "decode": {"instances": 1, "layout": "tp=2"}},
                     serving={"kv_transfer": "layerwise", "kv_capacity_tokens": 400000},
                     cluster={"gpu": "h200_sxm", "nic_gbps": nic_gbps, "nvlink_domain_size": 2})
    rng = np.random.default_rng(1)
    isl = rng.integers(500, 12000, 300)
    osl = rng.integers(1, 300, 300)
    df, eng = _run(data, isl=isl, osl=osl, gap_s=0.02)
    assert sorted(df.request_id) == list(range(300)) and (df.status == "completed").all()
    multi = df[df.output_tokens > 1]
    assert (multi.kv_transfer_start_s < multi.first_token_s).mean() > 0.1, "streams start during prefills"
    assert (multi.prefill_start_s <= multi.kv_transfer_start_s + 1e-12).all()
    assert (multi.first_token_s < multi.kv_transfer_end_s).all(), "the last layer leaves after the prefill"
    assert (multi.kv_transfer_end_s <= multi.finish_s).all()
    assert not eng.kv_transfers.live, "every stream landed"
    assert all(not l.flows for l in eng.topology.links)
