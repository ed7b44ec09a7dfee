"""Paged KV cache of one instance, with a prefix cache keyed by prompt-block hashes.

Memory is counted in blocks of ``block_size`` tokens. A request holds *private* blocks, and may
reference *prefix entries*: KV of one full hash block of ``hash_block_tokens`` prompt tokens
(Mooncake: 512), shared by every request whose prompt starts with the same blocks. An entry that no
running request references stays cached (evictable, LRU) until its memory is needed.

    used  = private blocks + blocks_per_entry × entries (referenced or evictable)
    free  = capacity − used
    available for a new allocation = free + blocks_per_entry × evictable entries
"""

from __future__ import annotations

from collections import OrderedDict


class KVCache:
    __slots__ = (
        "capacity", "block_size", "hash_block_tokens", "blocks_per_entry", "private",
        "refs", "evictable", "prefix_enabled", "hits_tokens", "lookup_tokens", "evictions",
    )

    def __init__(self, capacity_blocks: int, block_size: int, hash_block_tokens: int = 512,
                 prefix_enabled: bool = True) -> None:
        self.capacity = int(capacity_blocks)
        self.block_size = int(block_size)
        self.hash_block_tokens = int(hash_block_tokens)
        self.blocks_per_entry = -(-self.hash_block_tokens // self.block_size)
        self.private = 0
        self.refs: dict[int, int] = {}  # entry hash -> reference count (every cached entry is here)
        self.evictable: OrderedDict[int, None] = OrderedDict()  # refcount-0 entries, LRU first
        self.prefix_enabled = prefix_enabled
        self.hits_tokens = 0
        self.lookup_tokens = 0
        self.evictions = 0

    # ------------------------------------------------------------------ accounting
    @property
    def used(self) -> int:
        return self.private + self.blocks_per_entry * len(self.refs)

    @property
    def free(self) -> int:
        return self.capacity - self.used

    @property
    def available(self) -> int:
        return self.capacity - self.private - self.blocks_per_entry * (len(self.refs) - len(self.evictable))

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def _make_room(self, blocks: int) -> bool:
        if self.free >= blocks:
            return True
        if self.available < blocks:
            return False
        ev = self.evictable
        refs = self.refs
        while self.free < blocks:
            h, _ = ev.popitem(last=False)
            del refs[h]
            self.evictions += 1
        return True

    def allocate(self, blocks: int) -> bool:
        """Take ``blocks`` private blocks, evicting cached prefixes if needed. False if impossible."""
        if blocks <= 0:
            return True
        if not self._make_room(blocks):
            return False
        self.private += blocks
        return True

    def release(self, blocks: int) -> None:
        self.private -= blocks

    # ------------------------------------------------------------------ prefix cache
    def match(self, hashes, n_in: int) -> list[int]:
        """Longest cached prefix of ``hashes`` (full blocks only), as a list of entry hashes."""
        if not self.prefix_enabled or hashes is None:
            return []
        full = min(len(hashes), n_in // self.hash_block_tokens)
        refs = self.refs
        out = []
        for i in range(full):
            h = int(hashes[i])
            if h not in refs:
                break
            out.append(h)
        return out

    def reference(self, entries) -> None:
        refs, ev = self.refs, self.evictable
        for h in entries:
            c = refs[h]
            if c == 0:
                del ev[h]
            refs[h] = c + 1

    def dereference(self, entries) -> None:
        refs, ev = self.refs, self.evictable
        for h in entries:
            c = refs[h] - 1
            refs[h] = c
            if c == 0:
                ev[h] = None  # most recently used end

    def publish(self, hashes, n_in: int, start: int) -> tuple[list[int], int]:
        """After a prefill: turn the request's newly computed full prompt blocks into shared entries.

        ``start`` is the number of leading blocks it already references. Returns the entries the request
        now references on top of its hits, and how many private blocks it gave up (which became
        entries, or were dropped because a concurrent prefill published the same block first).
        """
        if not self.prefix_enabled or hashes is None:
            return [], 0
        full = min(len(hashes), n_in // self.hash_block_tokens)
        refs, ev = self.refs, self.evictable
        entries = []
        for i in range(start, full):
            h = int(hashes[i])
            c = refs.get(h)
            if c is None:
                refs[h] = 1
            else:
                if c == 0:
                    del ev[h]
                refs[h] = c + 1
            entries.append(h)
        freed = len(entries) * self.blocks_per_entry
        self.private -= freed
        return entries, freed
