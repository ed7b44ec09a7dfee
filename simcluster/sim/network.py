"""Links shared by flows with max-min fairness (processor sharing across every link a flow crosses).

A flow's rate is recomputed whenever a flow starts or ends (progressive filling): repeatedly find the
most constrained link (smallest fair share = remaining capacity / unfrozen flows on it), give that
share to its unfrozen flows, freeze them, and subtract their rate from the other links they cross.
The network keeps one pending wake-up, for the earliest completion; a change re-plans it (older
wake-ups are recognised by a generation counter and ignored).
"""

from __future__ import annotations

from typing import Callable


class Link:
    __slots__ = ("name", "kind", "capacity_Bps", "flows", "bytes_carried", "busy_rate")

    def __init__(self, name: str, kind: str, capacity_Bps: float) -> None:
        if capacity_Bps <= 0:
            raise ValueError(f"link {name}: capacity must be positive")
        self.name = name
        self.kind = kind  # "nvlink" | "nic" | "fabric"
        self.capacity_Bps = float(capacity_Bps)
        self.flows: list[Flow] = []
        self.bytes_carried = 0.0
        self.busy_rate = 0.0  # Σ rates of the flows on it now

    @property
    def utilisation(self) -> float:
        return self.busy_rate / self.capacity_Bps


class Flow:
    __slots__ = ("links", "remaining", "rate", "on_done", "payload", "size")

    def __init__(self, links: list[Link], size_bytes: float, on_done: Callable, payload=None) -> None:
        self.links = links
        self.size = float(size_bytes)
        self.remaining = float(size_bytes)
        self.rate = 0.0
        self.on_done = on_done
        self.payload = payload


class Network:
    def __init__(self, env) -> None:
        self.env = env
        self.flows: list[Flow] = []
        self._last = 0.0
        self._gen = 0

    # ------------------------------------------------------------------ public
    def start(self, links: list[Link], size_bytes: float, on_done: Callable, payload=None) -> Flow:
        self._advance()
        f = Flow(links, size_bytes, on_done, payload)
        if f.remaining <= 0 or not links:
            self.env.timeout(0).callbacks.append(lambda _ev: on_done(f))
            return f
        alone = all(not link.flows for link in links)
        self.flows.append(f)
        for link in links:
            link.flows.append(f)
        if alone:  # shares no link: its rate is its path's bottleneck, the others are unaffected
            f.rate = min(link.capacity_Bps for link in links)
            for link in links:
                link.busy_rate = f.rate
            self._schedule()
        else:
            self._replan()
        return f

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

    def _allocate(self) -> None:
        """Max-min fair rates by progressive filling."""
        flows = self.flows
        for f in flows:
            f.rate = -1.0  # unfrozen
        links: dict[int, Link] = {}
        for f in flows:
            for link in f.links:
                links[id(link)] = link
        residual = {k: l.capacity_Bps for k, l in links.items()}
        active = {k: sum(1 for f in l.flows) for k, l in links.items()}
        remaining = len(flows)
        while remaining:
            # most constrained link among those with unfrozen flows
            best_k, best_share = None, 0.0
            for k, n in active.items():
                if n > 0:
                    share = residual[k] / n
                    if best_k is None or share < best_share:
                        best_k, best_share = k, share
            if best_k is None:
                break
            for f in links[best_k].flows:
                if f.rate < 0:
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
        if not self.flows:
            return
        gen = self._gen
        t_next = min(f.remaining / f.rate for f in self.flows if f.rate > 0)
        self.env.timeout(max(t_next, 0.0)).callbacks.append(lambda _ev: self._on_wake(gen))

    def _on_wake(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._advance()
        done = [f for f in self.flows if f.remaining <= 1e-6 * max(f.size, 1.0)]
        if not done:
            self._replan()
            return
        shared = False
        for f in done:
            self.flows.remove(f)
            for link in f.links:
                link.flows.remove(f)
                link.busy_rate -= f.rate
                if link.flows:
                    shared = True
            f.remaining = 0.0
        if shared:  # the survivors on those links may now go faster
            self._replan()
        else:
            self._schedule()
        for f in done:
            f.on_done(f)
