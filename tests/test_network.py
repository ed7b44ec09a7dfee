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
