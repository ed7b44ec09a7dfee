"""Fault injection: GPUs, instances, nodes and links failing, links degrading, straggler ranks.

Scheduled faults (``failures.events``) happen at ``at_s``; random ones (``failures.random``) arrive
as a Poisson process per kind with rate ``units / MTBF`` (units = GPUs, instances or nodes of the
cluster), each hitting a unit drawn uniformly — from the run's own seeded generator, so the same
seed gives the same faults.

* ``gpu``      — the GPU is out until repaired; the instance holding it fails (a TP/EP group cannot
  run without one of its ranks).
* ``instance`` — the instance fails (process crash, driver reset); its GPUs stay usable.
* ``node``     — every GPU of the node is out; every instance with a GPU there fails.
* ``link_down`` / ``link_degrade`` — the link's capacity goes to 0 (flows on it stall until the
  repair) or to ``factor`` × capacity; flows re-share at once.
* ``straggler`` — every step of the instance takes ``factor`` × as long (its slowest rank sets the
  pace of the whole group).

A failed instance's requests are rerouted or failed (``failures.on_failure``, engine.fail_instance).
A failed instance is replaced at once, as a cluster scheduler reschedules a dead replica: on free
GPUs (node allocation + weight loading + warm-up), or on its own GPUs after a crash (no allocation);
with no free GPUs the replacement waits for a repair. Repair (after ``duration_s`` or ``mttr_s``)
returns failed GPUs to the pool.
"""

from __future__ import annotations

import numpy as np

from simcluster.errors import UserError
from simcluster.sim.instance import FAILED, SERVING, STOPPED


class FaultInjector:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.spec = engine.scenario.failures
        # a stream of its own, derived from the scenario seed (no global random state)
        self.rng = np.random.default_rng([engine.scenario.seed, 0xFA17])
        self.log: list[tuple] = []
        self.counts = {"instance_failures": 0, "replacements": 0, "repairs": 0}
        self.pending: list = []  # failed instances whose replacement waits for free GPUs
        for k, ev in enumerate(self.spec.events):  # user errors surface before the run writes anything
            self._check_target(ev, k)

    def start(self) -> None:
        env = self.engine.env
        for ev in self.spec.events:
            env.process(self._scheduled(ev))
        for r in self.spec.random:
            env.process(self._random(r))

    # ------------------------------------------------------------------ targets
    def _check_target(self, ev, k: int) -> None:
        e = self.engine
        where = f"failures.events.{k}.target"
        if ev.kind in ("instance", "straggler"):
            if ev.target not in e.by_name:
                raise UserError(f"no instance named {ev.target!r} at the start (have: "
                                f"{', '.join(sorted(e.by_name)[:8])}...)", where=where)
        elif ev.kind == "node":
            if not ev.target.isdigit() or int(ev.target) >= -(-e.gpus // e.gpupool.gpus_per_node):
                raise UserError(f"node {ev.target!r} is not a node index of this cluster "
                                f"(0..{-(-e.gpus // e.gpupool.gpus_per_node) - 1})", where=where)
        elif ev.kind == "gpu":
            g = self._gpu_index(ev.target)
            if g is None or g >= e.gpus:
                raise UserError(f"GPU {ev.target!r} is not in this cluster ({e.gpus} GPUs; give 'node:gpu' "
                                "or a global index)", where=where)
        else:  # links
            if self._links(ev.target) == []:
                raise UserError(f"no link or instance named {ev.target!r}", where=where)

    def _gpu_index(self, target: str):
        per = self.engine.gpupool.gpus_per_node
        try:
            if ":" in target:
                n, g = target.split(":", 1)
                return int(n) * per + int(g)
            return int(target)
        except ValueError:
            return None

    def _links(self, target: str) -> list:
        e = self.engine
        if target in e.by_name:  # an instance: its NICs
            return [l for k, l in e.by_name[target].links.items() if k.startswith("nic")]
        return [l for l in e.links if l.name == target]

    # ------------------------------------------------------------------ processes
    def _scheduled(self, ev):
        env = self.engine.env
        if ev.at_s > env.now:
            yield env.timeout(ev.at_s - env.now)
        undo = self.apply(ev.kind, ev.target, ev.factor)
        if ev.duration_s is not None and undo is not None:
            yield env.timeout(ev.duration_s)
            undo()

    def _random(self, r):
        e = self.engine
        env = e.env
        units = {"gpu": e.gpus, "node": -(-e.gpus // e.gpupool.gpus_per_node),
                 "instance": max(1, sum(len(v) for v in e.pools.values()))}[r.kind]
        rate = units / (r.mtbf_h * 3600.0)
        while e.n_done < e.n_total:
            yield env.timeout(float(self.rng.exponential(1.0 / rate)))
            if e.n_done >= e.n_total:
                return
            if r.kind == "instance":
                live = [i for role in sorted(e.pools) for i in e.pools[role]]
                if not live:
                    continue
                target = live[int(self.rng.integers(len(live)))].name
            else:
                target = str(int(self.rng.integers(units)))
            undo = self.apply(r.kind, target, 1.0)
            if undo is not None:
                env.process(self._later(r.mttr_s, undo))

    def _later(self, delay, fn):
        yield self.engine.env.timeout(delay)
        fn()

    # ------------------------------------------------------------------ effects
    def apply(self, kind: str, target: str, factor: float):
        """Inflict the fault now; returns the repair action (or None if nothing was hit)."""
        e = self.engine
        now = e.env.now
        self.log.append((now, kind, target))
        if kind == "straggler":
            inst = e.by_name[target]
            inst.slow = factor

            def undo():
                inst.slow = 1.0
            return undo
        if kind in ("link_down", "link_degrade"):
            links = self._links(target)
            old = [l.capacity_Bps for l in links]
            for l in links:
                e.network.set_capacity(l, 0.0 if kind == "link_down" else l.capacity_Bps * factor)

            def undo():
                for l, c in zip(links, old):
                    e.network.set_capacity(l, c)
            return undo
        if kind == "instance":
            inst = e.by_name.get(target)
            if inst is None or inst.state in (FAILED, STOPPED):
                return None
            self._fail(inst, restart_in_place=True)

            def undo():
                self._retry_pending()
            return undo
        gpus = self._gpus_of(kind, target)
        for g in gpus:
            e.gpupool.fail(g)
        hit = [i for i in e.all_instances if i.state not in (FAILED, STOPPED) and set(i.gpu_ids) & set(gpus)]
        for inst in hit:
            self._fail(inst)

        def undo():
            for g in gpus:
                e.gpupool.repair(g)
            self._retry_pending()
        return undo

    def _gpus_of(self, kind: str, target: str) -> list[int]:
        e = self.engine
        if kind == "gpu":
            return [self._gpu_index(target)]
        per = e.gpupool.gpus_per_node
        n = int(target)
        return list(range(n * per, min((n + 1) * per, e.gpus)))

    def _fail(self, inst, restart_in_place: bool = False) -> None:
        """Fail ``inst`` and start its replacement at once on free GPUs (a scheduler reschedules a dead
        replica): on the same GPUs after a crash (``restart_in_place``: no node allocation), elsewhere
        after a hardware fault; with no free GPUs, when a repair returns some."""
        e = self.engine
        self.counts["instance_failures"] += 1
        gpus = list(inst.gpu_ids)
        e.fail_instance(inst, "instance_failed")
        if restart_in_place:
            ids = gpus if all(g in e.gpupool.free[e.gpupool.domain_of(g)] for g in gpus) else None
            if ids is not None:
                for g in ids:
                    e.gpupool.free[e.gpupool.domain_of(g)].remove(g)
                self._start(inst, ids, allocate=False)
                return
        self._start(inst, None)

    def _start(self, old, ids, allocate: bool = True) -> None:
        """Provision the replacement of ``old``; once it serves, ``old`` counts as stopped (the
        timeline's ``instances_failed`` shows capacity still missing, not a history of failures)."""
        e = self.engine
        delay = e.provisioning_delay(old.role, allocate=allocate)
        new = e.start_instance(old.role, delay, gpu_ids=ids)
        if new is None:
            self.pending.append(old)
            self.log.append((e.env.now, "replacement_waits", old.name))
            return
        self.counts["replacements"] += 1
        self.log.append((e.env.now, "replacement", new.name))

        def replaced(_ev, old=old, new=new):
            if new.state == SERVING and old.state == FAILED:
                old.state = STOPPED
        e.env.timeout(delay).callbacks.append(replaced)

    def _retry_pending(self) -> None:
        self.counts["repairs"] += 1
        waiting, self.pending = self.pending, []
        for old in waiting:
            self._start(old, None)

    def report(self) -> dict:
        kinds = {"gpu", "instance", "node", "link_down", "link_degrade", "straggler"}
        return {"faults": sum(1 for x in self.log if x[1] in kinds), **self.counts}


def build(engine):
    """The scenario's fault injector (its targets checked), or None; ``start()`` it when the run begins."""
    fs = engine.scenario.failures
    if not fs.events and not fs.random:
        return None
    return FaultInjector(engine)
