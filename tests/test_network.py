"""Links shared with max-min fairness."""

from __future__ import annotations

import pytest
import simpy

from simcluster.sim.network import Link, Network


def _run(flows_spec, links):
    env = simpy.Environment()
    net = Network(env)
    done = {}
    peak = {name: 0.0 for name in links}

    def watch():
        while True:
            for name, link in links.items():
                assert link.busy_rate <= link.capacity_Bps * (1 + 1e-9), "utilisation never exceeds capacity"
                peak[name] = max(peak[name], link.utilisation)
            yield env.timeout(0.001)

    def start(name, at, path, size):
        yield env.timeout(at)
        net.start(path, size, lambda f, name=name: done.__setitem__(name, env.now))

    for name, at, path, size in flows_spec:
        env.process(start(name, at, path, size))
    env.process(watch())
    env.run(until=100)
    return done, peak


def test_two_transfers_on_one_link_each_get_half():
    a = Link("a", "nic", 100.0)
    done, peak = _run([("x", 0, [a], 100.0), ("y", 0, [a], 100.0)], {"a": a})
    # alone each would take 1 s; sharing, both finish at 2 s
    assert done["x"] == pytest.approx(2.0) and done["y"] == pytest.approx(2.0)
    assert peak["a"] == pytest.approx(1.0)


def test_a_transfer_across_two_links_is_limited_by_the_slower():
    fast, slow = Link("f", "nvlink", 400.0), Link("s", "nic", 50.0)
    done, _ = _run([("x", 0, [fast, slow], 100.0)], {"f": fast, "s": slow})
    assert done["x"] == pytest.approx(2.0)


def test_max_min_fairness_gives_the_leftover_to_the_unconstrained_flow():
    # x crosses a (100) and b (30); y crosses a only. Max-min: x gets 30 (b's share), y the rest, 70.
    a, b = Link("a", "nic", 100.0), Link("b", "nic", 30.0)
    done, _ = _run([("x", 0, [a, b], 30.0), ("y", 0, [a], 70.0)], {"a": a, "b": b})
    assert done["x"] == pytest.approx(1.0) and done["y"] == pytest.approx(1.0)


def test_a_late_flow_slows_an_earlier_one_then_it_speeds_up_again():
    a = Link("a", "nic", 100.0)
    # x: 100 B alone from 0 to 0.5 s (50 B), then shares until y (25 B at 50 B/s) ends at 1.0 s,
    # then alone again: 25 B left at 100 B/s -> 1.25 s
    done, _ = _run([("x", 0, [a], 100.0), ("y", 0.5, [a], 25.0)], {"a": a})
    assert done["y"] == pytest.approx(1.0)
    assert done["x"] == pytest.approx(1.25)


# ---------------------------------------------------------------------------- max-min under random load
import math  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402


def _check_max_min(net, links):
    """Max-min fairness, by its definition: every flow is at its cap, or crosses a saturated link on
    which no other flow gets more than it does (its bottleneck)."""
    for link in links:
        assert link.busy_rate <= link.capacity_Bps * (1 + 1e-9) + 1e-9, f"{link.name} over capacity"
    for f in net.flows:
        if f.rate >= f.cap * (1 - 1e-9):
            continue
        bottleneck = [l for l in f.links
                      if l.busy_rate >= l.capacity_Bps * (1 - 1e-9) - 1e-9
                      and all(g.rate <= f.rate * (1 + 1e-9) + 1e-9 for g in l.flows)]
        assert bottleneck, f"flow at {f.rate} has no bottleneck link"


flow_spec = st.tuples(
    st.floats(0.0, 3.0),  # start time
    st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True),  # links crossed
    st.floats(1.0, 500.0),  # bytes
    st.one_of(st.just(math.inf), st.floats(5.0, 200.0)),  # cap
)


@settings(max_examples=60, deadline=None)
@given(caps=st.lists(st.floats(10.0, 300.0), min_size=5, max_size=5),
       flows=st.lists(flow_spec, min_size=1, max_size=12))
def test_random_flows_are_max_min_fair_never_exceed_capacity_and_all_arrive(caps, flows):
    env = simpy.Environment()
    net = Network(env)
    links = [Link(f"l{i}", "nic", c) for i, c in enumerate(caps)]
    done = []

    def start(at, idx, size, cap):
        yield env.timeout(at)
        net.start([links[i] for i in idx], size, lambda f: done.append(f), cap=cap)
        _check_max_min(net, links)

    def watch():
        while len(done) < len(flows):
            _check_max_min(net, links)
            yield env.timeout(0.01)

    for at, idx, size, cap in flows:
        env.process(start(at, idx, size, cap))
    env.process(watch())
    env.run(until=1000)
    assert len(done) == len(flows), "every flow arrives"
    carried = sum(l.bytes_carried for l in links)
    assert carried == pytest.approx(sum(size * len(idx) for _, idx, size, _ in flows), rel=1e-6)


# ---------------------------------------------------------------------------- caps, capacity changes, latency
def test_a_capped_flow_goes_no_faster_than_its_cap_and_leaves_the_rest_to_the_others():
    a = Link("a", "nic", 100.0)
    # x is capped at 20: it takes 20/20 = 1 s; y gets 80 until then (80 B), then 100 -> 100 B at 1.2 s
    done, _ = _run_capped([("x", 0, [a], 20.0, 20.0), ("y", 0, [a], 100.0, math.inf)])
    assert done["x"] == pytest.approx(1.0)
    assert done["y"] == pytest.approx(1.2)


def _run_capped(spec, until=100):
    env = simpy.Environment()
    net = Network(env)
    done = {}
    for name, at, path, size, cap in spec:
        def go(name=name, at=at, path=path, size=size, cap=cap):
            yield env.timeout(at)
            net.start(path, size, lambda f: done.__setitem__(name, env.now), cap=cap)
        env.process(go())
    env.run(until=until)
    return done, net


def test_latency_delays_arrival_but_not_the_link():
    env = simpy.Environment()
    net = Network(env)
    a = Link("a", "nic", 100.0)
    done = {}
    net.start([a], 100.0, lambda f: done.__setitem__("x", env.now), latency_s=0.5)
    env.run(until=1.2)
    assert a.flows == [] and a.busy_rate == 0.0, "the link is free once the last byte left (1 s)"
    env.run(until=10)
    assert done["x"] == pytest.approx(1.5)


def test_halving_a_link_mid_transfer_slows_the_rest_of_it():
    env = simpy.Environment()
    net = Network(env)
    a = Link("a", "nic", 100.0)
    done = {}
    net.start([a], 100.0, lambda f: done.__setitem__("x", env.now))
    env.timeout(0.5).callbacks.append(lambda _e: net.set_capacity(a, 50.0))
    env.run(until=10)
    # 50 B in the first 0.5 s, the other 50 B at 50 B/s
    assert done["x"] == pytest.approx(1.5)


def test_a_failed_link_stalls_its_flows_until_repaired_and_abort_drops_them_silently():
    env = simpy.Environment()
    net = Network(env)
    a, b = Link("a", "nic", 100.0), Link("b", "nic", 100.0)
    done = {}
    net.start([a], 100.0, lambda f: done.__setitem__("x", env.now))
    y = net.start([b], 100.0, lambda f: done.__setitem__("y", env.now))
    env.timeout(0.25).callbacks.append(lambda _e: net.set_capacity(a, 0.0))
    env.timeout(0.75).callbacks.append(lambda _e: net.set_capacity(a, 100.0))
    env.run(until=0.5)
    assert a.utilisation == 0.0 and net.flows[0].rate == 0.0, "stalled on the failed link"
    env.run(until=10)
    assert done["x"] == pytest.approx(1.5), "0.5 s of outage added to its 1 s"
    assert done["y"] == pytest.approx(1.0), "a flow on another link is untouched"
    z = net.start([b], 100.0, lambda f: done.__setitem__("z", env.now))
    env.timeout(0.5).callbacks.append(lambda _e: done.__setitem__("aborted", net.abort_flows(b)))
    env.run(until=20)
    assert done["aborted"] == [z] and "z" not in done, "abort removes without on_done"
    assert z.remaining == pytest.approx(50.0) and not z.active and b.busy_rate == 0.0
    assert y.remaining == 0.0


def test_extending_a_flow_adds_its_bytes_at_the_current_rate():
    env = simpy.Environment()
    net = Network(env)
    a = Link("a", "nic", 100.0)
    done = {}
    f = net.start([a], 100.0, lambda fl: done.__setitem__("x", env.now), cap=50.0)

    def later(_e):
        net.extend(f, 25.0)
        net.set_cap(f, math.inf)
    env.timeout(1.0).callbacks.append(later)
    env.run(until=10)
    # 50 B by 1 s at the cap; then 75 B at 100 B/s
    assert done["x"] == pytest.approx(1.75)


def test_an_endless_capped_flow_is_background_load_and_never_completes():
    env = simpy.Environment()
    net = Network(env)
    a = Link("a", "nic", 100.0)
    done = {}
    bg = net.start([a], math.inf, lambda fl: done.__setitem__("bg", env.now), cap=30.0)
    net.start([a], 70.0, lambda fl: done.__setitem__("x", env.now))
    env.run(until=5)
    assert done == {"x": pytest.approx(1.0)}, "x gets what the background load leaves (70 B/s)"
    assert bg.active and bg.rate == pytest.approx(30.0)
    assert a.bytes_carried == pytest.approx(70.0 + 30.0 * 1.0)
    net.sync()
    assert a.bytes_carried == pytest.approx(70.0 + 30.0 * 5.0)
