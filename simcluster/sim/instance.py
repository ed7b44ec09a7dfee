"""One serving instance: a model replica on ``layout`` GPUs running continuous batching.

Roles share one scheduler:

* ``colocated`` — prefill chunks and decodes in the same steps (chunked prefill under a token budget);
* ``prefill``   — prefill only; a finished prefill hands the request to the engine for KV transfer;
* ``decode``    — decodes requests whose KV arrived; it also re-prefills requests it preempted.

Event model: a step that contains prefill work is one event. A run of pure-decode steps with an
unchanged batch is one event: its per-step latencies come from one vectorised ``decode_run`` call,
and the run is cut short at the next step boundary when something new can join. Per-request progress
is not touched per step: a decode step counter ``steps_done`` and each request's ``join_step`` give
``generated = steps_done − join_step``; ``ctx_base`` keeps Σ(prompt − join_step) so the batch's total
context is ``ctx_base + B·steps_done`` without a loop.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from simcluster.perf.interface import BatchShape
from simcluster.sim.kvcache import KVCache
from simcluster.sim.request import Request

_NORMAL = 1  # simpy's NORMAL event priority


class _Wake:
    """A bare wake-up on the SimPy event queue: what ``env.step`` needs of an event, nothing more."""

    __slots__ = ("callbacks", "_ok", "_value", "tok")

    def __init__(self, fn, tok: int) -> None:
        self.callbacks = [fn]
        self._ok = True
        self._value = None
        self.tok = tok


# lifecycle (timeline.parquet counts instances per role and state)
STARTING = "starting"  # provisioning: node allocation, weight loading, warm-up; not routed to
SERVING = "serving"
DRAINING = "draining"  # not routed to; finishes what it holds, then stops
STOPPED = "stopped"  # drained (scaled down or switching role); its GPUs are free
FAILED = "failed"


class Instance:
    def __init__(self, engine, name: str, role: str, pool_spec, cost, kv: KVCache, gpus: int,
                 domain: int, index: int) -> None:
        self.engine = engine
        self.env = engine.env
        self.state = SERVING
        self.gpu_ids: list[int] = []
        self.on_drained = None  # callback when a drain completes (role switch)
        self.born = engine.env.now
        self.serving_since = None
        self.ended = None
        self.slow = 1.0  # straggler: step-time multiplier of its slowest rank
        self.handed = 0  # (prefill) finished prefills whose KV has not left yet
        self.name = name
        self.role = role
        self.index = index
        self.cost = cost
        self.kv = kv
        self.gpus = gpus
        self.domain = domain  # NVLink domain index (placement)
        self.max_seqs = pool_spec.max_num_seqs
        self.budget = pool_spec.max_num_batched_tokens
        self.chunked = pool_spec.chunked_prefill
        self.max_queue = pool_spec.max_queue
        self.links: dict[str, object] = {}  # "nic_out", "nic_in", "nvl_out", "nvl_in" (set by the cluster)

        self.waiting: deque[Request] = deque()  # routed here, not yet admitted (bounded)
        self.prefilling: list[Request] = []  # admitted, prefill in progress (FCFS)
        self.running: dict[int, Request] = {}  # decode set, in join order (LIFO victim = last)
        self.pending_join: list[Request] = []  # KV landed, joins at the next step boundary
        self.transfer_queue: deque[tuple[Request, object]] = deque()  # waiting for memory to receive KV
        self.reserved = 0  # requests with KV memory reserved for an incoming transfer
        sv = engine.scenario.serving
        # reserve_full admission: Σ final KV blocks of admitted requests stays within capacity
        self.reserve_full = sv.kv_admission == "reserve_full"
        self._committed = 0
        # does this instance's finished prefill show the client its first token?
        self._ft_at_prefill = role != "prefill" or sv.first_token_at == "prefill_end"
        self._ft_mode = sv.first_token_at

        self.steps_done = 0
        self.ctx_base = 0
        self._alloc = 0  # decode step the running set's KV is allocated through
        self._held = 0  # blocks the running set holds (private + shared) = Σ need_i(_alloc)
        self._asum = 0
        self._cnt = [0] * kv.block_size
        self._finish_heap: list[tuple[int, int, int, Request]] = []
        self._joiners: list[Request] = []  # joined since the last step: their first gap is measured
        self._join_token = 0

        # outstanding work for routing: prompt tokens still to prefill here
        self.pending_prefill_tokens = 0
        self._rdirty = False  # router bookkeeping (sim/router.py)
        self._rver = 0
        self._router_dirty = engine.router.dirty

        # stepping state
        self._idle = True  # nothing planned: a kick schedules a wake-up
        self._tok = 0  # token of the live wake-up
        self._pending = None  # what the step or run in progress needs at its end
        self._run_start = 0.0
        # latencies of the current step / run: affine in the step index, step k taking a0 + a1·k (a
        # mixed step, a run inside one latency-table cell: no arrays), or explicit arrays (_arr)
        self._arr = False
        self._a0 = 0.0
        self._a1 = 0.0
        self._cum = np.zeros(1)
        self._lats = np.zeros(1)
        self._affine = getattr(cost, "decode_run_affine", None)
        self._cuttable = False  # a pure-decode run in progress, which a kick may cut short
        self._reserve = 0  # blocks kept for the running decodes while admitting prompts
        self._run_cut = 0  # steps the current run will actually do
        self.busy_time = 0.0
        self.flops = 0.0
        self.hbm_bytes = 0.0
        self._record_steps = engine.recorder.steps is not None

        # TRT-LLM's two ways of holding prompts back: attention-DP context balancing
        # (pools.*.attention_dp_balance, see _adp_gate) and, without attention DP, delayed batching
        # (pools.*.batch_wait, see _batch_wait_gate). Counters are in steps of this instance: with
        # speculative decoding a decode step is 1 / acceptance length of an iteration, so the
        # iteration counts are scaled by it.
        self._adp = None
        self._bw = None
        adp = getattr(pool_spec, "attention_dp_balance", None)
        bw = getattr(pool_spec, "batch_wait", None)
        if adp is not None or bw is not None:
            from simcluster.perf.layout import Layout

            dp = Layout.parse(pool_spec.layout).dp
            al = float(getattr(cost, "spec_al", 1.0) or 1.0)
            if adp is not None and dp > 1:
                self._adp = (dp, max(1, round(adp.timeout_iters * al)), round(adp.batching_wait_iters * al))
            if bw is not None and dp == 1 and bw.timeout_iters > 0 and bw.max_tokens_ratio > 0:
                # tokens as the engine's budget counts them (a decode is one)
                self._bw = (round(bw.timeout_iters * al), bw.max_tokens_ratio * self.budget)
        self._adp_count = 0  # steps counted towards the timeout (TRT-LLM adp_ctx_waiting_iters_count)
        self._adp_wait = 0  # steps waited with every rank holding a prompt (adp_ctx_batching_wait_iters_count)
        self._bw_count = 0  # steps prompts were held by delayed batching (batch_wait_iters_count)
        # what the step or run in progress counts: 0 nothing, 1 the timeout, 2 the batching wait,
        # 3 delayed batching
        self._hold_mode = 0
        self._hold_limit = 0  # at most this many steps before the gate must be looked at again (0: no limit)

    # ------------------------------------------------------------------ load signals (router, timeline)
    @property
    def queue_depth(self) -> int:
        return len(self.waiting) + len(self.transfer_queue)

    @property
    def num_running(self) -> int:
        return len(self.running) + len(self.prefilling)

    def outstanding(self) -> float:
        """Work still owed by this instance, for least-outstanding routing (tokens)."""
        if self.role == "decode":
            return float(len(self.running) + len(self.pending_join) + self.reserved + len(self.transfer_queue))
        return float(self.pending_prefill_tokens)

    def has_queue_room(self) -> bool:
        return len(self.waiting) < self.max_queue

    # ------------------------------------------------------------------ entry points
    def enqueue(self, req: Request) -> None:
        """A routed request joins the waiting queue (caller checked ``has_queue_room``)."""
        req.prefill_inst = req.prefill_inst or self.name
        self.waiting.append(req)
        self.pending_prefill_tokens += req.prefill_target
        self._touch()
        self.kick()

    def offer_transfer(self, req: Request, src: "Instance") -> None:
        """(decode role) A prefilled request asks for KV memory here; the transfer starts once reserved."""
        req.decode_inst = self.name
        self.transfer_queue.append((req, src))
        self._touch()
        self._drain_transfers()

    def _drain_transfers(self) -> None:
        while self.transfer_queue:
            req, src = self.transfer_queue[0]
            if len(self.running) + len(self.prefilling) + len(self.pending_join) + self.reserved >= self.max_seqs:
                return
            need = self.kv.blocks_for(req.n_in + req.generated)  # its KV (+ the next token)
            if self.reserve_full:
                final = self._final_blocks(req)
                if self._committed + final > self.kv.capacity:
                    return
            if self.kv.available - need < self._blocks_short(1) or not self.kv.allocate(need):
                return
            if self.reserve_full:
                self._committed += final
            self.transfer_queue.popleft()
            req.dst_blocks = need  # the source still holds req.blocks until the KV has left
            self.reserved += 1
            self._touch()
            self.engine.start_kv_transfer(req, src, self)

    def kv_landed(self, req: Request) -> None:
        self.reserved -= 1
        self._touch()
        req.blocks = req.dst_blocks
        req.dst_blocks = 0
        if self.reserve_full:
            req.committed = self._final_blocks(req)  # counted in _committed when the transfer was accepted
        if req.first_token != req.first_token:  # NaN: the client has not seen a token yet
            if self._ft_mode == "kv_landed":
                req.first_token = self.env.now
            else:  # first_decode_step: this instance samples the first token again in its first step
                req.generated -= 1
        self.pending_join.append(req)
        self._touch()
        self.kick()

    def held_time(self, end: float) -> float:
        return (self.ended if self.ended is not None else end) - self.born

    def _touch(self) -> None:
        """Its outstanding work changed: the router re-keys it before its next pick."""
        if not self._rdirty:
            self._rdirty = True
            self._router_dirty.append(self)

    def is_empty(self) -> bool:
        return not (self.waiting or self.prefilling or self.running or self.pending_join or self.transfer_queue
                    or self.reserved or self.handed)

    def kick(self) -> None:
        """Something new may be schedulable: wake an idle instance, or cut a decode run short."""
        if self.state == FAILED:
            return
        if self._idle:
            self._idle = False
            self._schedule(0.0, self._on_kick_wake)  # after everything else due now (same-time batching)
        elif self._cuttable:
            self._cut_run()

    # ------------------------------------------------------------------ memory
    def _final_blocks(self, req: Request) -> int:
        """Blocks the request holds here at its largest: the prompt on a prefill instance, else prompt +
        all but the last output token."""
        if self.role == "prefill":
            return self.kv.blocks_for(req.prefill_target)
        return self.kv.blocks_for(req.n_in + req.n_out - 1)

    def _release(self, req: Request) -> None:
        kv = self.kv
        if req.committed:
            self._committed -= req.committed
            req.committed = 0
        kv.release(req.blocks)
        req.blocks = 0
        if req.hit_entries:
            kv.dereference(req.hit_entries)
            req.hit_entries = ()
        if req.own_entries:
            kv.dereference(req.own_entries)
            req.own_entries = ()

    def release_after_transfer(self, req: Request) -> None:
        """(prefill role) The KV has left: free it and let waiting prompts in."""
        self.handed -= 1
        self._release(req)
        self.kick()

    def cancel_incoming(self, req: Request, started: bool) -> None:
        """(decode role) A transfer to here will not land (its source failed): give back what it holds."""
        if not started:
            self.transfer_queue = deque(x for x in self.transfer_queue if x[0] is not req)
            self._touch()
            return
        self.reserved -= 1
        self._touch()
        self.kv.release(req.dst_blocks)
        req.dst_blocks = 0
        if self.reserve_full:
            self._committed -= self._final_blocks(req)
        self._drain_transfers()
        self.kick()

    def evacuate(self) -> list[tuple[Request, int]]:
        """(failure) Stop now. Returns the requests it held with the tokens each has streamed to its
        client (completed steps only). Transfers to or from it are the engine's to settle."""
        out = []

        def streamed(r: Request, gen: int) -> int:
            return gen if r.first_token == r.first_token else 0

        for r in self.waiting:
            out.append((r, streamed(r, r.generated)))
        for r in self.prefilling:
            out.append((r, streamed(r, r.generated)))
        for r in self.running.values():
            out.append((r, streamed(r, max(0, self.steps_done - r.join_step))))
        for r in self.pending_join:
            out.append((r, streamed(r, r.generated)))
        self.waiting.clear()
        self.prefilling = []
        self.running = {}
        self.pending_join = []
        self.transfer_queue.clear()
        self.pending_prefill_tokens = 0
        self._idle = False
        self._cuttable = False
        self._tok += 1  # whatever was planned will not happen
        self._pending = None
        return out

    def _admit(self, req: Request) -> bool:
        """Move the head of ``waiting`` into prefill if memory allows (blocks for its whole prompt)."""
        kv = self.kv
        hits = kv.match(req.hashes, req.n_in)
        cached = min(len(hits) * kv.hash_block_tokens, req.prefill_target - 1)
        need = kv.blocks_for(req.prefill_target) - len(hits) * kv.blocks_per_entry
        if self.reserve_full and not req.committed:
            final = self._final_blocks(req)
            if self._committed + final > kv.capacity:
                return False
        else:
            final = 0
        if hits:
            kv.reference(hits)  # pin them before eviction can pick them
        # keep room for the running decodes' next token: admitting must not force a preemption
        if kv.available - need < self._reserve or not kv.allocate(need):
            if hits:
                kv.dereference(hits)
            return False
        if req.preemptions == 0 and req.restarts == 0:
            kv.lookup_tokens += req.n_in
            kv.hits_tokens += cached
            req.cached = cached
        if final:
            req.committed = final
            self._committed += final
        req.hit_entries = tuple(hits)
        req.blocks = need
        req.prefill_done = cached
        self.pending_prefill_tokens -= cached
        self._touch()
        return True

    # Decode-set memory without a loop over requests. A running request i holds exactly
    # need_i(A) = ceil((base_i + A) / bs) blocks (private + shared entries), where base_i + S is its
    # KV length at decode-step counter S and A ≥ S is the step the instance has allocated through.
    # Writing base_i = bs·a_i + k_i (0 ≤ k_i < bs): Σ need_i(m) = Σ a_i + Σ_k cnt[k]·ceil((k + m)/bs),
    # so growing, shrinking and checking a run of n steps cost O(bs), whatever the batch.
    def _total_blocks(self, m: int) -> int:
        # with q, r = divmod(m, bs): ceil((k + m)/bs) = q + [k + r ≥ 1] + [k + r > bs]
        bs = self.kv.block_size
        q, r = divmod(m, bs)
        cnt = self._cnt
        B = len(self.running)
        tot = self._asum + B * (q + 1)
        if r == 0:
            tot -= cnt[0]
        else:
            tot += sum(cnt[bs - r + 1:])
        return tot

    def _blocks_short(self, n: int) -> int:
        """Extra blocks the running set needs to run ``n`` more decode steps."""
        if not self.running:
            return 0
        short = self._total_blocks(self.steps_done + n) - self._held
        return short if short > 0 else 0

    def _grow(self, n: int) -> None:
        """Allocate through step ``steps_done + n`` (feasibility checked by the caller)."""
        target = self.steps_done + n
        if target > self._alloc:
            total = self._total_blocks(target)
            ok = self.kv.allocate(total - self._held)
            assert ok, "growth was checked to fit"
            self._held = total
            self._alloc = target

    def _shrink(self) -> None:
        """Give back blocks allocated for steps a cut run did not do."""
        if self._alloc > self.steps_done:
            self._alloc = self.steps_done
            total = self._total_blocks(self.steps_done)
            self.kv.release(self._held - total)
            self._held = total

    def _private_now(self, req: Request) -> int:
        base = req.n_in - req.join_step - 1
        need = -(-(base + self._alloc) // self.kv.block_size)
        return need - self.kv.blocks_per_entry * (len(req.hit_entries) + len(req.own_entries))

    def _preempt_one(self) -> None:
        """Preempt the most recently joined decode (vLLM's policy); it re-prefills prompt + output."""
        rid, req = self.running.popitem()
        self._untrack(req)
        gen = self.steps_done - req.join_step
        req.generated = gen
        req.slot = -1
        self._release(req)
        req.preemptions += 1
        req.prefill_target = req.n_in + gen
        req.prefill_done = 0
        self.pending_prefill_tokens += req.prefill_target
        self._touch()
        self.waiting.appendleft(req)
        self.engine.stats_preemptions += 1

    # ------------------------------------------------------------------ decode set
    def _join(self, req: Request) -> None:
        """Add a request that has its first ``generated`` tokens to the decode set (at A == S)."""
        req.join_step = self.steps_done - req.generated
        self._join_token += 1
        req.slot = self._join_token
        req.joined_run = True
        self._joiners.append(req)
        self.running[req.id] = req
        self._touch()
        self.ctx_base += req.n_in - req.join_step
        a, k = divmod(req.n_in - req.join_step - 1, self.kv.block_size)
        self._asum += a
        self._cnt[k] += 1
        # it holds at least what its KV needs now; give back any reserve beyond that
        private = self._private_now(req)
        self._held += private + self.kv.blocks_per_entry * (len(req.hit_entries) + len(req.own_entries))
        excess = req.blocks - private
        if excess > 0:
            self.kv.release(excess)
            req.blocks -= excess
        elif excess < 0:  # cannot happen: prefill and transfer allocate for the whole KV
            raise AssertionError("joined with less KV memory than its context")
        heapq.heappush(self._finish_heap, (req.join_step + req.n_out, req.id, req.slot, req))

    def _untrack(self, req: Request) -> None:
        """Remove from the aggregate memory/context counters; set its exact private block count."""
        req.blocks = self._private_now(req)
        self._held -= req.blocks + self.kv.blocks_per_entry * (len(req.hit_entries) + len(req.own_entries))
        self.ctx_base -= req.n_in - req.join_step
        a, k = divmod(req.n_in - req.join_step - 1, self.kv.block_size)
        self._asum -= a
        self._cnt[k] -= 1

    def _leave(self, req: Request) -> None:
        del self.running[req.id]
        self._touch()
        self._untrack(req)
        req.slot = -1
        self._release(req)

    def _next_finish_step(self) -> int:
        h = self._finish_heap
        while h:
            step, rid, token, req = h[0]
            if req.slot == token and rid in self.running:
                return step
            heapq.heappop(h)
        return -1

    # ------------------------------------------------------------------ scheduler
    def _adp_gate(self, B: int) -> bool:
        """May waiting prompts be admitted now? TRT-LLM's ``_balance_adp_requests``, evaluated once per
        planned step or run with ``B`` running sequences on ``dp`` ranks. The instance keeps one queue,
        not one per rank: TRT-LLM hands each new request to the rank with the fewest active ones, so
        ``dp`` waiting prompts are taken as one on every rank, and ``B < dp`` as a rank without a
        running sequence. Sets what the steps that follow count (``_hold_mode``) and how many may run
        before the gate is looked at again."""
        dp, timeout, wait = self._adp
        self._hold_mode = 0
        self._hold_limit = 0
        if B < dp:  # some rank has no generation request: no reason to hold prompts back
            self._adp_count = 0
            return True
        if len(self.waiting) >= dp and B < self.max_seqs:  # every rank has a prompt and a free slot
            self._adp_count = 0
            if self._adp_wait < wait:
                self._hold_mode = 2
                self._hold_limit = wait - self._adp_wait
                return False
            self._adp_wait = 0
            return True
        if self._adp_count >= timeout:
            self._adp_count = 0
            return True
        self._hold_mode = 1
        if self.waiting:
            self._hold_limit = timeout - self._adp_count
        return False

    def _batch_wait_gate(self, B: int) -> bool:
        """TRT-LLM's ``_waiting_requests``: with sequences decoding and prompts waiting, hold the
        prompts while fewer than ``timeout`` steps were held and prompt tokens + decode tokens stay
        under the threshold."""
        self._hold_mode = 0
        self._hold_limit = 0
        if not (B and self.waiting):
            return True
        timeout, threshold = self._bw
        tokens = B
        for req in self.waiting:
            tokens += req.prefill_target - req.prefill_done
            if tokens >= threshold:
                break
        if self._bw_count < timeout and tokens < threshold:
            self._hold_mode = 3
            self._hold_limit = timeout - self._bw_count
            return False
        self._bw_count = 0
        return True

    def _hold_advance(self, steps: int) -> None:
        """``steps`` steps done under the gate's current decision."""
        mode = self._hold_mode
        if mode == 1:
            self._adp_count += steps
            if not self._hold_limit:  # planned with nothing held: the counter ran on, resetting at the timeout
                self._adp_count %= self._adp[1]
        elif mode == 2:
            self._adp_wait += steps
        elif mode == 3:
            self._bw_count += steps

    def _build_prefill(self, budget: int, admit: bool = True):
        """Chunks for this step: continue admitted prefills FCFS, then admit from the queue (unless
        ``admit`` is false)."""
        chunks: list[tuple[Request, int]] = []
        seqs = len(self.running) + len(self.prefilling)
        for req in self.prefilling:
            if budget <= 0:
                break
            rem = req.prefill_target - req.prefill_done
            c = min(rem, budget) if self.chunked else rem
            if not self.chunked and chunks and c > budget:
                break
            chunks.append((req, c))
            budget -= c
        while admit and self.waiting and budget > 0 and seqs < self.max_seqs:
            req = self.waiting[0]
            if not self._admit(req):
                break  # FCFS: head of line waits for memory
            self.waiting.popleft()
            if req.prefill_start != req.prefill_start:  # NaN: first admission
                req.prefill_start = self.env.now
                if self.role == "prefill":
                    self.engine.prefill_started(req, self)
            self.prefilling.append(req)
            seqs += 1
            rem = req.prefill_target - req.prefill_done
            c = min(rem, budget) if self.chunked else rem
            if not self.chunked and chunks and c > budget:
                break
            chunks.append((req, c))
            budget -= c
        return chunks

    # The instance is a state machine driven by its own wake-up events on the SimPy clock (no
    # generator process): _next() plans the next step or run and schedules its end; _end_*() completes
    # it and calls _next() again. A wake-up carries the token it was scheduled with; cutting a run
    # short or failing bumps the token, so superseded wake-ups are ignored when they fire.
    def _schedule(self, delay: float, fn) -> None:
        self._tok += 1
        w = _Wake(fn, self._tok)
        self.env.schedule(w, _NORMAL, delay)

    def _on_kick_wake(self, w) -> None:
        if w.tok == self._tok and self.state != FAILED:
            self._next()

    def _next(self) -> None:
        env = self.env
        while True:
            self._shrink()
            for req in self.pending_join:
                self._join(req)
            self.pending_join.clear()

            B = len(self.running)
            admit = True
            if self._adp is not None:
                admit = self._adp_gate(B)
            elif self._bw is not None:
                admit = self._batch_wait_gate(B)
            if self.waiting or self.prefilling:
                self._reserve = self._blocks_short(1) if (B and self.waiting) else 0
                chunks = self._build_prefill(self.budget - B, admit)
            else:
                chunks = []
            if not chunks and B == 0:
                if self.state == DRAINING and self.is_empty():
                    self.engine.instance_drained(self)
                    return
                self._idle = True
                return

            if chunks:
                # memory for one more decode token each; preempt (LIFO) if it does not fit
                while self.running and self._blocks_short(1) > self.kv.available:
                    self._preempt_one()
                if self.running:
                    self._grow(1)
                B = len(self.running)
                shape = self._shape(chunks, B)
                st = self.cost.step(shape)
                lat = st.latency_s * self.slow
                self._arr = False
                self._a0 = lat
                self._a1 = 0.0
                self._run_cut = 1
                self._pending = (st, shape, chunks, B, env.now)
                self._schedule(lat, self._end_mixed)
                return

            # pure decode: one run of identical-batch steps
            nf = self._next_finish_step()
            n = max(1, nf - self.steps_done)
            if self._hold_limit and n > self._hold_limit:
                n = self._hold_limit
            if self._blocks_short(n) > self.kv.available:
                lo, hi = 0, n  # largest feasible run length by bisection
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if self._blocks_short(mid) <= self.kv.available:
                        lo = mid
                    else:
                        hi = mid - 1
                if lo == 0:
                    self._preempt_one()
                    continue
                n = lo
            self._grow(n)
            ctx = self.ctx_base + B * self.steps_done
            aff = self._affine(B, ctx, n) if self._affine is not None else None
            if aff is not None:
                a0, a1 = aff
                if self.slow != 1.0:
                    a0 *= self.slow
                    a1 *= self.slow
                self._arr = False
                self._a0 = a0
                self._a1 = a1
                total = n * a0 + a1 * (n * (n - 1) * 0.5)
            else:
                lats = self.cost.decode_run(B, ctx, n)
                if self.slow != 1.0:
                    lats = lats * self.slow
                self._arr = True
                self._lats = lats
                self._cum = cum = np.cumsum(lats)
                total = float(cum[-1])
            self._run_start = env.now
            self._run_cut = n
            self._cuttable = n > 1
            self._pending = (B, ctx)
            self._schedule(total, self._end_decode)
            return

    def _end_mixed(self, w) -> None:
        if w.tok != self._tok:
            return  # superseded (the instance failed)
        st, shape, chunks, B, start = self._pending
        self._pending = None
        self._account(st)
        self.engine.record_step(self, start, "mixed" if B else "prefill", 1, B + len(chunks),
                                shape.prefill_tokens, B, shape.decode_context_tokens, st)
        if self._hold_mode:
            self._hold_advance(1)
        self._complete_decode_steps(1, start)
        self._complete_prefill(chunks)
        self._next()

    def _end_decode(self, w) -> None:
        if w.tok != self._tok:
            return  # superseded: cut short (a later wake-up ends it) or failed
        self._cuttable = False
        B, ctx = self._pending
        self._pending = None
        start = self._run_start
        j = self._run_cut
        if self._record_steps:
            st = self.cost.decode_run_totals(B, ctx, j)
            self._account(st)
            self.engine.record_step(self, start, "decode", j, B, 0, B * j, ctx, st)
        else:
            flops, hbm = self.cost.decode_run_work(B, ctx, j)
            self.busy_time += self._cum_k(j)
            self.flops += flops
            self.hbm_bytes += hbm
        if self._hold_mode:
            self._hold_advance(j)
        self._complete_decode_steps(j, start)
        self._next()

    def _shape(self, chunks, B: int) -> BatchShape:
        tokens = 0
        pairs = 0.0
        past = 0
        for req, c in chunks:
            p = req.prefill_done
            tokens += c
            past += p
            pairs += c * (p + (c + 1) / 2.0)
        return BatchShape(tokens, len(chunks), pairs, past, B, self.ctx_base + B * self.steps_done)

    # ------------------------------------------------------------------ timing of a step / run
    def _cum_k(self, k: int) -> float:
        """Time from the start of the current step / run to the end of its ``k``-th step (k ≥ 1)."""
        if self._arr:
            return float(self._cum[k - 1])
        return k * self._a0 + self._a1 * (k * (k - 1) * 0.5)

    def _cut_run(self) -> None:
        """End the current decode run at the first step boundary at or after now."""
        elapsed = self.env.now - self._run_start
        if self._arr:
            k = int(np.searchsorted(self._cum, elapsed, side="left")) + 1  # steps done by that boundary
        else:  # smallest k ≥ 1 with k·a0 + a1·k(k−1)/2 ≥ elapsed: the quadratic's root, then exact
            a0, a1 = self._a0, self._a1
            if a1 > 1e-12 * a0:
                b = a0 - 0.5 * a1
                k = max(1, int(((b * b + 2.0 * a1 * elapsed) ** 0.5 - b) / a1))
            else:
                k = max(1, int(elapsed / a0))
            cum_k = self._cum_k
            while k > 1 and cum_k(k - 1) >= elapsed:
                k -= 1
            while cum_k(k) < elapsed:
                k += 1
        if k >= self._run_cut:
            return
        self._run_cut = k
        self._cuttable = False
        self._schedule(max(self._run_start + self._cum_k(k) - self.env.now, 0.0), self._end_decode)

    def _account(self, st) -> None:
        self.busy_time += st.latency_s
        self.flops += st.flops
        self.hbm_bytes += st.hbm_bytes

    # ------------------------------------------------------------------ completions
    def _complete_decode_steps(self, j: int, start: float) -> None:
        if not self.running or j <= 0:
            self.steps_done += j
            return
        eng = self.engine
        B = len(self.running)
        # inter-token gaps: a request that joined at this run's start waited since its last token
        arr = self._arr
        first = float(self._lats[0]) if arr else self._a0
        first_end = start + first
        itl = eng.itl
        fresh = 0
        if self._joiners:
            running = self.running
            for r in self._joiners:
                if r.joined_run and r.id in running:
                    if r.first_token != r.first_token:  # NaN: this step shows the first token
                        r.first_token = first_end
                    else:
                        itl.add_one(first_end - r.last_token)
                    r.joined_run = False
                    fresh += 1
            self._joiners.clear()
        if B > fresh:
            itl.add_one(first, B - fresh)
        if j > 1:
            if arr:
                itl.add_run(self._lats[1:j], float(self._cum[j - 1]) - first, B)
            else:
                itl.add_affine(first + self._a1, self._a1, j - 1, self._cum_k(j) - first, B)
        s0 = self.steps_done
        self.steps_done += j
        h = self._finish_heap
        while h:
            step, rid, token, req = h[0]
            if not (req.slot == token and rid in self.running):
                heapq.heappop(h)
                continue
            if step > self.steps_done:
                break
            heapq.heappop(h)
            t = start + self._cum_k(step - s0)
            req.generated = req.n_out
            req.last_token = t
            self._leave(req)
            eng.finish(req, t)
        if self.role == "decode" and self.transfer_queue:
            self._drain_transfers()

    def _complete_prefill(self, chunks) -> None:
        now = self.env.now
        eng = self.engine
        done = []
        for req, c in chunks:
            req.prefill_done += c
            self.pending_prefill_tokens -= c
            self._touch()
            if req.prefill_done >= req.prefill_target:
                done.append(req)
        if not done:
            return
        self.prefilling = [r for r in self.prefilling if r.prefill_done < r.prefill_target]
        for req in done:
            # a finished prefill (or recompute) emits the next token
            req.generated += 1
            if req.first_token != req.first_token and (self._ft_at_prefill or req.generated >= req.n_out):
                req.first_token = now  # first time (a disaggregated prefill may leave it to decode)
            req.last_token = now
            fresh = req.preemptions == 0 and req.prefill_target == req.n_in
            own, freed = self.kv.publish(req.hashes, req.n_in, len(req.hit_entries)) if fresh else ([], 0)
            if own:
                req.own_entries = tuple(own)
                req.blocks -= freed
            if req.generated >= req.n_out:
                self._release(req)
                eng.finish(req, now)
            elif self.role == "prefill":
                self.handed += 1
                eng.prefill_done(req, self)
            else:
                req.joined_run = True
                self._join(req)
        if self.role == "decode" and self.transfer_queue:
            self._drain_transfers()
