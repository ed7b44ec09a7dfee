"""Links shared by flows with max-min fairness (processor sharing across every link a flow crosses).

A flow's rate is recomputed whenever a flow starts or ends (progressive filling): repeatedly find the
most constrained link (smallest fair share = remaining capacity / unfrozen flows on it), give that
share to its unfrozen flows, freeze them, and subtract their rate from the other links they cross.
The network keeps one pending wake-up, for the earliest completion; a change re-plans it (older
wake-ups are recognised by a generation counter and ignored).

Beyond the links, a flow may carry

* a **rate cap** (bytes/s): it never goes faster, e.g. a layer-wise KV stream cannot outrun the
  prefill that produces the KV, or a transfer whose bytes leave from fewer GPUs than its instance
  has. Max-min fairness treats the cap as a private link of that capacity;
* a **latency** (seconds): ``on_done`` fires that long after the last byte left (set-up handshake,
  switch hops, propagation). The link is free during it, as with a pipelined wire.

Link capacities can change (:meth:`Network.set_capacity`: degradation; 0 = failed, its flows stall at
rate 0) and flows can be removed without completing (:meth:`Network.abort_flows`,
:meth:`Network.cancel`), for a failure model. A flow of infinite size never completes: a background
load such as a collective's traffic, whose cap the owner re-sets with :meth:`Network.set_cap`.
"""

from __future__ import annotations

import math
from typing import Callable

INF = math.inf


class Link:
    __slots__ = ("name", "kind", "capacity_Bps", "flows", "bytes_carried", "busy_rate")

    def __init__(self, name: str, kind: str, capacity_Bps: float) -> None:
        if capacity_Bps <= 0:
            raise ValueError(f"link {name}: capacity must be positive")
        self.name = name
        self.kind = kind  # "nvlink" | "nic" | "rack_uplink" | "rack_downlink"
        self.capacity_Bps = float(capacity_Bps)
        self.flows: list[Flow] = []
        self.bytes_carried = 0.0
        self.busy_rate = 0.0  # Σ rates of the flows on it now

    @property
    def utilisation(self) -> float:
        """Σ flow rates / capacity, in [0, 1]; 0 for a failed (zero-capacity) link."""
        return self.busy_rate / self.capacity_Bps if self.capacity_Bps > 0 else 0.0

    def __repr__(self) -> str:
        return f"Link({self.name!r}, {self.kind!r}, {self.capacity_Bps:.4g} B/s, {len(self.flows)} flows)"


class Flow:
    __slots__ = ("links", "remaining", "rate", "on_done", "payload", "size", "cap", "latency_s", "active",
                 "_tol")

    def __init__(self, links: list[Link], size_bytes: float, on_done: Callable, payload=None,
                 cap: float = INF, latency_s: float = 0.0) -> None:
        self.links = links
        self.size = float(size_bytes)
        self.remaining = float(size_bytes)
        self.rate = 0.0
        self.on_done = on_done
        self.payload = payload
        self.cap = float(cap)  # bytes/s this flow never exceeds
        self.latency_s = float(latency_s)  # on_done fires this long after the last byte left
        self.active = False  # on its links now
        self._tol = _tolerance(self.size)


def _tolerance(size: float) -> float:
    """Bytes left that count as done (rounding of rate × time); an endless flow is never done."""
    return 1e-6 * max(size, 1.0) if size < INF else -1.0


class Network:
    def __init__(self, env) -> None:
        self.env = env
        self.flows: list[Flow] = []
        self._last = 0.0
        self._gen = 0

    # ------------------------------------------------------------------ public
    def start(self, links: list[Link], size_bytes: float, on_done: Callable, payload=None, *,
              cap: float = INF, latency_s: float = 0.0) -> Flow:
        """Start a flow of ``size_bytes`` over ``links`` (all of them, in series); ``on_done(flow)``
        runs ``latency_s`` after its last byte left. ``cap``: its own rate limit, bytes/s."""
        self._advance()
        f = Flow(links, size_bytes, on_done, payload, cap, latency_s)
        if f.remaining <= 0 or not links:
            self.env.timeout(f.latency_s).callbacks.append(lambda _ev: on_done(f))
            return f
        alone = all(not link.flows for link in links)
        # a capped flow that fits in every link's spare capacity takes its cap and changes no other
        # flow's max-min rate (no link it crosses becomes over-subscribed): no re-plan needed
        fits = not alone and f.cap < INF and all(
            f.cap <= link.capacity_Bps * (1.0 + 1e-12) - link.busy_rate for link in links)
        f.active = True
        self.flows.append(f)
        for link in links:
            link.flows.append(f)
        if alone:  # shares no link: its rate is its path's bottleneck, the others are unaffected
            rate = min(link.capacity_Bps for link in links)
            f.rate = rate if rate < f.cap else f.cap
            for link in links:
                link.busy_rate = f.rate
            self._schedule()
        elif fits:
            f.rate = f.cap
            for link in links:
                link.busy_rate += f.cap
            self._schedule()
        else:
            self._replan()
        return f

    def set_cap(self, flow: Flow, cap: float) -> None:
        """Change a flow's own rate limit (bytes/s; ``math.inf`` for none) and re-share."""
        self._advance()
        flow.cap = float(cap)
        if flow.active:
            self._replan()

    def extend(self, flow: Flow, extra_bytes: float) -> None:
        """Add bytes to an active flow (a stream whose last part became known)."""
        if not flow.active:
            raise ValueError("extend: the flow is no longer on its links")
        self._advance()
        flow.size += extra_bytes
        flow.remaining += extra_bytes
        flow._tol = _tolerance(flow.size)
        self._schedule()

    def set_capacity(self, link: Link, capacity_Bps: float) -> None:
        """Degrade or restore a link (bytes/s ≥ 0). At 0 the link has failed: its flows stall at rate 0
        until the capacity comes back or they are aborted."""
        if capacity_Bps < 0:
            raise ValueError(f"link {link.name}: capacity must not be negative")
        self._advance()
        link.capacity_Bps = float(capacity_Bps)
        if link.flows:
            self._replan()

    def abort_flows(self, link: Link) -> list[Flow]:
        """Remove every flow crossing ``link`` from the network **without** calling ``on_done``; the
        others are re-shared. Returns the removed flows (``remaining`` says what did not arrive)."""
        self._advance()
        gone = list(link.flows)
        for f in gone:
            self._remove(f)
        if gone:
            self._replan()
        return gone

    def cancel(self, flow: Flow) -> None:
        """Remove one flow without calling ``on_done`` (no-op if it already left its links)."""
        if not flow.active:
            return
        self._advance()
        self._remove(flow)
        self._replan()

    def sync(self) -> None:
        """Bring ``bytes_carried`` and every flow's ``remaining`` up to now (for sampling)."""
        self._advance()

    # ------------------------------------------------------------------ internals
    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            for f in self.flows:
                moved = f.rate * dt
                f.remaining -= moved
                for link in f.links:
                    link.bytes_carried += moved
        self._last = now

    def _remove(self, f: Flow) -> None:
        self.flows.remove(f)
        for link in f.links:
            link.flows.remove(f)
            link.busy_rate -= f.rate
            if not link.flows:
                link.busy_rate = 0.0
        f.active = False
        f.rate = 0.0

    def _allocate(self) -> None:
        """Max-min fair rates by progressive filling; a flow's cap acts as a private link."""
        flows = self.flows
        for f in flows:
            f.rate = -1.0  # unfrozen
        links: dict[int, Link] = {}
        for f in flows:
            for link in f.links:
                links[id(link)] = link
        residual = {k: l.capacity_Bps for k, l in links.items()}
        active = {k: len(l.flows) for k, l in links.items()}
        capped = sorted((f for f in flows if f.cap < INF), key=lambda f: f.cap)
        ci = 0
        remaining = len(flows)
        while remaining:
            # most constrained link among those with unfrozen flows
            best_k, best_share = None, INF
            for k, n in active.items():
                if n > 0:
                    share = residual[k] / n
                    if share < best_share:
                        best_k, best_share = k, share
            while ci < len(capped) and capped[ci].rate >= 0:
                ci += 1  # already frozen by a link
            if ci < len(capped) and capped[ci].cap <= best_share:
                frozen = [capped[ci]]  # its cap binds before any link does
                best_share = capped[ci].cap
                ci += 1
            elif best_k is None:
                break
            else:
                frozen = [f for f in links[best_k].flows if f.rate < 0]
            if best_share < 0.0:
                best_share = 0.0  # rounding of the residuals
            for f in frozen:
                f.rate = best_share
                remaining -= 1
                for link in f.links:
                    k = id(link)
                    residual[k] -= best_share
                    active[k] -= 1
        for link in links.values():
            link.busy_rate = sum(f.rate for f in link.flows)

    def _replan(self) -> None:
        self._allocate()
        self._schedule()

    def _schedule(self) -> None:
        self._gen += 1
        t_next = INF
        for f in self.flows:
            if f.rate > 0:
                t = f.remaining / f.rate
                if t < t_next:
                    t_next = t
        if t_next == INF:  # nothing moves (no flows, only endless or stalled ones)
            return
        gen = self._gen
        self.env.timeout(max(t_next, 0.0)).callbacks.append(lambda _ev: self._on_wake(gen))

    def _on_wake(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._advance()
        # done: within rounding of its size, or so close that the clock could not move to its end
        eps_t = max(1e-9, self.env.now * 1e-12)
        done = [f for f in self.flows if f.remaining <= f._tol or f.remaining <= f.rate * eps_t]
        if not done:
            self._replan()
            return
        shared = False
        for f in done:
            if not shared:  # only a saturated link held other flows back
                shared = any(link.flows and len(link.flows) > 1
                             and link.busy_rate >= link.capacity_Bps * (1.0 - 1e-9) for link in f.links)
            self._remove(f)
            f.remaining = 0.0
        if shared:  # the survivors on those links may now go faster
            self._replan()
        else:
            self._schedule()
        for f in done:
            if f.latency_s > 0:
                self.env.timeout(f.latency_s).callbacks.append(lambda _ev, f=f: f.on_done(f))
            else:
                f.on_done(f)
