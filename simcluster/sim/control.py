"""Control loops: rate matching and autoscaling, as SimPy processes that see what a real one sees.

A :class:`Scraper` samples the counters a metrics system would export (requests arrived and their
prompt tokens, requests completed and their output tokens, queue depth per role, recent TTFT/TPOT)
every few seconds. A controller deciding at time ``t`` reads the scrape taken at or before
``t − scrape_delay_s`` and the one ``window_s`` before that — never the trace ahead of the clock
(output lengths are known only for completed requests, as in a real deployment).

Rate matching (``rate_matching.policy``; disaggregated only):

* ``fixed``          — ``ratio`` prefill instances per decode instance, of the configured total;
* ``static_optimal`` — the split of the configured GPUs that balances prefill and decode request
  throughput at the FTL/TTL targets (sim/capacity.py, SEED-NOTES §2.3), set before the run;
* ``dynamic``        — every ``interval_s`` the same balance for the observed ISL/OSL mix; when it
  gains ≥ ``min_gain`` the surplus role's least-loaded instance drains, then restarts in the other
  role after a warm-up (same layout) or a weight reload (``provisioning.role_switch``).

Autoscaling (``autoscaling.policy``): per role, a target count from the policy, clamped to
``[min, max]``; scale-up provisions instances (node allocation + weight loading + warm-up, from
``provisioning``); scale-down drains the least-loaded serving instances, never below ``min`` and not
within ``cooldown_s`` of the role's last change (a scale-up counts from when its instances serve).
"""

from __future__ import annotations

import math
from collections import deque

from simcluster.sim.capacity import InstanceCapacity, balance
from simcluster.sim.instance import STARTING

SCRAPE_PERIOD_S = 5.0  # how often the metrics system samples (Prometheus' common 5-15 s) [INFERRED]


# ---------------------------------------------------------------------- before the run
def _targets(scenario):
    rm = scenario.rate_matching
    return (rm.ftl_s if rm.ftl_s is not None else scenario.slo.ttft_s,
            rm.ttl_s if rm.ttl_s is not None else scenario.slo.tpot_s)


def initial_counts(scenario, plans, workload) -> dict[str, int]:
    """Instances per role at the start: the configured pools, changed by fixed or static rate matching
    and clamped to the autoscaling bounds."""
    counts = {p.role: p.spec.instances for p in plans}
    rm = scenario.rate_matching
    by_role = {p.role: p for p in plans}
    if rm.policy in ("fixed", "static_optimal") and "prefill" in by_role:
        p, d = by_role["prefill"], by_role["decode"]
        budget = counts["prefill"] * p.gpus_per_instance + counts["decode"] * d.gpus_per_instance
        if rm.policy == "fixed":
            n = counts["prefill"] + counts["decode"]
            n_p = min(n - 1, max(1, round(n * rm.ratio / (1.0 + rm.ratio))))
            counts["prefill"], counts["decode"] = n_p, n - n_p
        else:
            ftl, ttl = _targets(scenario)
            isl = rm.isl or float(workload.input_tokens.mean())
            osl = rm.osl or float(workload.output_tokens.mean())
            pr = InstanceCapacity(p).prefill_rate(isl, ftl)
            dr = InstanceCapacity(d).decode_rate(isl, osl, ttl)
            counts["prefill"], counts["decode"] = balance(pr, dr, p.gpus_per_instance, d.gpus_per_instance, budget)
    if scenario.autoscaling.policy != "none":
        for role in counts:
            b = getattr(scenario.autoscaling, role)
            counts[role] = min(max(counts[role], b.min, 1), b.max)
    return counts


# ---------------------------------------------------------------------- metrics
class Scraper:
    """Counter snapshots every SCRAPE_PERIOD_S: (t, arrived, prompt tokens, completed, output tokens,
    {role: (queue depth, serving instances)})."""

    def __init__(self, engine, keep_s: float) -> None:
        self.engine = engine
        self.snaps: deque = deque()
        self.keep_s = keep_s
        engine.env.process(self._run())

    def _snap(self):
        e = self.engine
        pools = {}
        for role, insts in e.pools.items():
            pools[role] = (sum(i.queue_depth for i in insts), len(insts))
        return (e.env.now, e.n_arrived, e.isl_arrived, e.n_completed, e.osl_completed, pools)

    def _run(self):
        env = self.engine.env
        e = self.engine
        while e.n_done < e.n_total:
            self.snaps.append(self._snap())
            while self.snaps and self.snaps[0][0] < env.now - self.keep_s:
                self.snaps.popleft()
            yield env.timeout(SCRAPE_PERIOD_S)

    def at(self, t: float):
        """The newest snapshot taken at or before ``t`` (None before the first)."""
        best = None
        for s in self.snaps:
            if s[0] <= t:
                best = s
            else:
                break
        return best

    def window(self, now: float, delay: float, window: float):
        """(rate req/s, mean ISL, mean OSL or None, newest snapshot) over the window ending ``delay`` ago."""
        new = self.at(now - delay)
        old = self.at(now - delay - window)
        if new is None:
            return None
        if old is None:
            old = self.snaps[0]
        dt = new[0] - old[0]
        if dt <= 0:
            return None
        arrived = new[1] - old[1]
        done = new[3] - old[3]
        rate = arrived / dt
        isl = (new[2] - old[2]) / arrived if arrived else None
        osl = (new[4] - old[4]) / done if done else None
        return rate, isl, osl, new


# ---------------------------------------------------------------------- controllers
class _Controller:
    def __init__(self, engine, scraper: Scraper) -> None:
        self.engine = engine
        self.scraper = scraper
        self.caps = {role: InstanceCapacity(plan) for role, plan in engine.plans.items()}
        self.log: list[tuple] = []  # (time, action, role, detail)

    def counts(self, role: str) -> tuple[list, int]:
        """(serving instances, starting instances) of a role."""
        e = self.engine
        starting = sum(1 for i in e.all_instances if i.role == role and i.state == STARTING)
        return e.pools[role], starting

    def least_loaded(self, role: str):
        insts = self.engine.pools[role]
        return min(insts, key=lambda i: (i.outstanding() + len(i.running) + len(i.waiting), -i.index)) if insts else None


class RateMatcher(_Controller):
    """Dynamic rate matching: move instances between the prefill and decode roles."""

    def __init__(self, engine, scraper) -> None:
        super().__init__(engine, scraper)
        self.spec = engine.scenario.rate_matching
        self.ftl, self.ttl = _targets(engine.scenario)
        self.moves = 0
        self.last_osl = None
        engine.env.process(self._run())

    def _run(self):
        e = self.engine
        env = e.env
        delay = e.scenario.autoscaling.scrape_delay_s
        while e.n_done < e.n_total:
            yield env.timeout(self.spec.interval_s)
            self.decide(env.now, delay)

    def decide(self, now: float, delay: float) -> None:
        e = self.engine
        obs = self.scraper.window(now, delay, self.spec.window_s)
        if obs is None or obs[1] is None:
            return
        _, isl, osl, _ = obs
        if osl is None:
            osl = self.last_osl
        if osl is None:
            return
        self.last_osl = osl
        busy = any(i.state in (STARTING,) or i.on_drained is not None for i in e.all_instances
                   if i.state != "stopped" and i.state != "failed")
        if busy:  # a move is still under way: let it land before judging again
            return
        (serving_p, start_p), (serving_d, start_d) = self.counts("prefill"), self.counts("decode")
        n_p, n_d = len(serving_p) + start_p, len(serving_d) + start_d
        gp, gd = e.plans["prefill"].gpus_per_instance, e.plans["decode"].gpus_per_instance
        pr = self.caps["prefill"].prefill_rate(isl, self.ftl)
        dr = self.caps["decode"].decode_rate(isl, osl, self.ttl)
        if pr <= 0 or dr <= 0:
            return
        budget = n_p * gp + n_d * gd
        t_p, t_d = balance(pr, dr, gp, gd, budget)
        now_thr = min(n_p * pr, n_d * dr)
        new_thr = min(t_p * pr, t_d * dr)
        if new_thr < now_thr * (1.0 + self.spec.min_gain):
            return
        if t_p > n_p:
            src, dst, k = "decode", "prefill", min(t_p - n_p, n_d - 1)
        else:
            src, dst, k = "prefill", "decode", min(n_p - t_p, n_p - 1)
        k = min(k, self.spec.max_moves)
        for _ in range(k):
            inst = self.least_loaded(src)
            if inst is None:
                break
            same = e.plans[src].gpus_per_instance == e.plans[dst].gpus_per_instance and \
                e.plans[src].spec.layout == e.plans[dst].spec.layout
            reload = e.scenario.provisioning.role_switch == "reload" or not same
            delay_s = e.provisioning_delay(dst, allocate=False, reload=reload)
            e.drain(inst, then=lambda old, dst=dst, d=delay_s: self._restart(old, dst, d))
            self.moves += 1
            self.log.append((now, "switch", src, f"{inst.name} -> {dst}; isl {isl:.0f} osl {osl:.0f}"))

    def _restart(self, old, role: str, delay_s: float) -> None:
        e = self.engine
        new = e.start_instance(role, delay_s)
        if new is None:  # the GPUs went elsewhere (autoscaler): nothing to restart on
            self.log.append((e.env.now, "switch_failed", role, old.name))

    def report(self) -> dict:
        return {"rate_matching_moves": self.moves}


class Autoscaler(_Controller):
    def __init__(self, engine, scraper) -> None:
        super().__init__(engine, scraper)
        self.spec = engine.scenario.autoscaling
        self.ftl, self.ttl = _targets(engine.scenario)
        self.last_change = {role: -math.inf for role in engine.plans}
        self.ups = 0
        self.downs = 0
        self.no_capacity = 0
        self.last_osl = None
        if self.spec.policy == "slo":
            engine.recent = deque()
        engine.env.process(self._run())

    def _run(self):
        e = self.engine
        env = e.env
        while e.n_done < e.n_total:
            yield env.timeout(self.spec.interval_s)
            self.decide(env.now)

    # -- policies: the wanted number of instances of each role (before clamping)
    def _throughput(self, now: float) -> dict[str, int] | None:
        sp = self.spec
        obs = self.scraper.window(now, sp.scrape_delay_s, sp.window_s)
        if obs is None:
            return None
        rate, isl, osl, _ = obs
        if osl is not None:
            self.last_osl = osl
        osl = self.last_osl
        if isl is None or osl is None:
            return None
        want = {}
        load = rate * sp.headroom
        for role, cap in self.caps.items():
            if role == "prefill":
                r = cap.prefill_rate(isl, self.ftl)
            elif role == "decode":
                r = cap.decode_rate(isl, osl, self.ttl)
            else:
                r = cap.colocated_rate(isl, osl, self.ftl, self.ttl)
            want[role] = math.ceil(load / r - 1e-9) if r > 0 else None
        return want

    def _queue(self, now: float) -> dict[str, int] | None:
        sp = self.spec
        snap = self.scraper.at(now - sp.scrape_delay_s)
        if snap is None:
            return None
        want = {}
        for role, (depth, n) in snap[5].items():
            cur = self._current(role)
            per = depth / max(n, 1)
            want[role] = cur + 1 if per > sp.queue_high else (cur - 1 if per < sp.queue_low else cur)
        return want

    def _slo(self, now: float) -> dict[str, int] | None:
        sp = self.spec
        e = self.engine
        hi_t, lo_t = now - sp.scrape_delay_s, now - sp.scrape_delay_s - sp.window_s
        rec = e.recent
        while rec and rec[0][0] < lo_t:
            rec.popleft()
        seen = [r for r in rec if r[0] <= hi_t]
        if len(seen) < 10:
            return None
        slo = e.scenario.slo
        want = {}
        for role in e.plans:
            cur = self._current(role)
            if role == "decode":
                bound, vals = slo.tpot_s, [r[2] for r in seen]
            else:
                bound, vals = slo.ttft_s, [r[1] for r in seen]
            if bound is None:
                want[role] = cur
                continue
            vals.sort()
            p90 = vals[min(len(vals) - 1, int(0.9 * len(vals)))]
            want[role] = cur + 1 if p90 > bound else (cur - 1 if p90 < sp.slo_low * bound else cur)
        return want

    def _current(self, role: str) -> int:
        serving, starting = self.counts(role)
        return len(serving) + starting

    def decide(self, now: float) -> None:
        e = self.engine
        sp = self.spec
        want = {"throughput": self._throughput, "queue": self._queue, "slo": self._slo}[sp.policy](now)
        if want is None:
            return
        for role, w in want.items():
            if w is None:
                continue
            b = getattr(sp, role)
            w = min(max(w, b.min, 1), b.max)
            cur = self._current(role)
            if w > cur:
                delay = e.provisioning_delay(role)
                for _ in range(w - cur):
                    inst = e.start_instance(role, delay)
                    if inst is None:
                        self.no_capacity += 1
                        break
                    self.ups += 1
                    self.log.append((now, "up", role, inst.name))
                # the cooldown runs from when the new capacity serves, not from the decision
                self.last_change[role] = now + delay
            elif w < cur and now - self.last_change[role] >= sp.cooldown_s:
                serving, _ = self.counts(role)
                for _ in range(min(cur - w, len(serving) - 1)):
                    inst = self.least_loaded(role)
                    if inst is None or not e.drain(inst):
                        break
                    self.downs += 1
                    self.log.append((now, "down", role, inst.name))
                self.last_change[role] = now

    def report(self) -> dict:
        return {"autoscaling_scale_ups": self.ups, "autoscaling_scale_downs": self.downs,
                "autoscaling_no_capacity": self.no_capacity}


def start(engine) -> list:
    """Start the control loops the scenario asks for; returns them (each has ``report()``)."""
    sc = engine.scenario
    out = []
    dynamic = sc.rate_matching.policy == "dynamic" and "prefill" in engine.plans
    scaling = sc.autoscaling.policy != "none"
    if not (dynamic or scaling):
        return out
    keep = max(sc.autoscaling.scrape_delay_s + sc.autoscaling.window_s,
               sc.autoscaling.scrape_delay_s + sc.rate_matching.window_s) + 2 * SCRAPE_PERIOD_S
    scraper = Scraper(engine, keep)
    if dynamic:
        out.append(RateMatcher(engine, scraper))
    if scaling:
        out.append(Autoscaler(engine, scraper))
    return out
