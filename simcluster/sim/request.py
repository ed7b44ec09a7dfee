"""Per-request state while a request is in flight (small slotted objects; rows leave via the recorder)."""

from __future__ import annotations

import math

# terminal statuses (requests.parquet `status`)
COMPLETED = "completed"
REJECTED = "rejected"  # never admitted: every queue full, or too long for any instance
FAILED = "failed"  # admitted, then lost (failure injection, later issues)
UNFINISHED = "unfinished"  # still in flight when the run's time limit was reached

NAN = math.nan


class Request:
    __slots__ = (
        "id", "arrival", "n_in", "n_out", "hashes", "cached", "status", "reason",
        "prefill_inst", "decode_inst", "prefill_start", "first_token", "kv_start", "kv_end", "finish",
        "preemptions", "generated", "prefill_target", "prefill_done", "hit_entries", "own_entries",
        "blocks", "dst_blocks", "slot", "join_step", "last_token", "joined_run", "committed", "restarts",
    )

    def __init__(self, rid: int, arrival: float, n_in: int, n_out: int, hashes=None) -> None:
        self.id = rid
        self.arrival = arrival
        self.n_in = n_in
        self.n_out = n_out
        self.hashes = hashes  # prefix-block ids or None
        self.cached = 0  # prompt tokens served from the prefix cache
        self.status = ""
        self.reason = ""
        self.prefill_inst = ""
        self.decode_inst = ""
        self.prefill_start = NAN
        self.first_token = NAN
        self.kv_start = NAN
        self.kv_end = NAN
        self.finish = NAN
        self.preemptions = 0
        self.generated = 0  # output tokens produced so far
        self.prefill_target = n_in  # tokens whose KV the next prefill must hold (prompt, or prompt+generated on recompute)
        self.prefill_done = 0  # tokens of prefill_target already in KV (cached or computed)
        self.hit_entries = ()  # prefix-cache entries this request references (hits)
        self.own_entries = ()  # prefix-cache entries this request created
        self.blocks = 0  # private KV blocks held
        self.dst_blocks = 0  # blocks reserved at the decode instance while the KV is in flight
        self.slot = -1  # decode slot in its instance
        self.join_step = 0  # instance decode-step counter when it joined the running set
        self.last_token = NAN  # time of its latest token (for inter-token gaps)
        self.joined_run = False
        self.committed = 0  # blocks counted against the instance's reserve_full admission budget
        self.restarts = 0  # times rerouted after the instance holding it failed

    def reset_for_retry(self, streamed: int) -> None:
        """Start again on another instance after a failure: its KV is lost; the ``streamed`` tokens the
        client already has are recomputed with the prompt, and generation goes on from there."""
        self.generated = streamed
        self.prefill_target = self.n_in + streamed
        self.prefill_done = 0
        self.hit_entries = ()
        self.own_entries = ()
        self.blocks = 0
        self.dst_blocks = 0
        self.committed = 0
        self.slot = -1
        self.joined_run = False
        self.prefill_inst = ""
        self.decode_inst = ""

    @property
    def context(self) -> int:
        """Tokens in KV once the pending token is processed: prompt + generated."""
        return self.n_in + self.generated
