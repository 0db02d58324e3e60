"""KV blocks: allocation with reference counts, and hash-chained prefix caching.

A full block is identified by a hash chained over its token ids and the previous block's hash, so
equal hashes mean equal prefixes; on a hit the stored token ids are compared too, so a hash collision
can never hand out wrong KV. A freed block keeps its hash and content and can be revived by a later
request with the same prefix until the allocator reuses it (least recently freed first).

Sequences that compress their KV, or prefill it by semantic reuse, neither read nor join the prefix
cache: compaction rewrites their blocks in place and reused KV is approximate, so the blocks must be
theirs alone and must never be served for a plain prefix.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from precog.backend.engine.sequence import Sequence


@dataclass(slots=True)
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()


def chain_hash(previous: int | None, token_ids: tuple[int, ...]) -> int:
    return hash((previous, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._by_hash: dict[int, int] = {}

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def cached_prefix(self, seq: Sequence) -> list[int]:
        """Blocks already holding a prefix of seq's tokens; never all of them (one token must be computed)."""
        if not self.enable_prefix_caching or seq.private_kv:
            return []
        hits: list[int] = []
        previous: int | None = None
        for i in range((seq.num_tokens - 1) // self.block_size):
            ids = tuple(seq.token_ids[i * self.block_size : (i + 1) * self.block_size])
            previous = chain_hash(previous, ids)
            block_id = self._by_hash.get(previous)
            if block_id is None or self.blocks[block_id].token_ids != ids:
                break
            hits.append(block_id)
        return hits

    def can_admit(self, hits: list[int], num_tokens: int) -> bool:
        """Whether seq can hold num_tokens using `hits` plus fresh blocks (revived hits count as taken)."""
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return self.blocks_for(num_tokens) - len(hits) + revived <= self.num_free

    def admit(self, seq: Sequence, hits: list[int]) -> None:
        """Give seq the cached blocks `hits`; their tokens count as computed."""
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self._free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
            seq.block_hashes.append(block.hash)  # type: ignore[arg-type]
        seq.num_computed_tokens = len(hits) * self.block_size

    def grow(self, seq: Sequence, num_tokens: int) -> bool:
        """Make seq's blocks cover num_tokens; False (and nothing taken) when too few blocks are free."""
        need = self.blocks_for(num_tokens) - len(seq.block_table)
        if need > self.num_free:
            return False
        for _ in range(need):
            seq.block_table.append(self._take_free())
        return True

    def commit(self, seq: Sequence) -> None:
        """Register every newly full, computed block of seq in the prefix cache."""
        if not self.enable_prefix_caching or seq.private_kv:
            return
        full = seq.num_computed_tokens // self.block_size
        for i in range(len(seq.block_hashes), full):
            ids = tuple(seq.token_ids[i * self.block_size : (i + 1) * self.block_size])
            previous = seq.block_hashes[-1] if seq.block_hashes else None
            h = chain_hash(previous, ids)
            block = self.blocks[seq.block_table[i]]
            block.hash, block.token_ids = h, ids
            self._by_hash[h] = block.block_id
            seq.block_hashes.append(h)

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Free seq's blocks beyond those that hold its first num_tokens cached tokens."""
        keep = self.blocks_for(num_tokens)
        self.release(seq.block_table[keep:])
        del seq.block_table[keep:]

    def take(self, count: int) -> list[int] | None:
        """count fresh blocks for a side store (OjaKV coefficient pages), or None if too few are free."""
        if count > self.num_free:
            return None
        return [self._take_free() for _ in range(count)]

    def release(self, block_ids: list[int]) -> None:
        """Drop one reference to each block; blocks nobody uses go to the free list, last ones first."""
        for block_id in reversed(block_ids):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free[block_id] = None

    def free(self, seq: Sequence) -> None:
        """Drop seq's references (a KV method's side pages too); blocks nobody uses go to the free list."""
        self.release(seq.block_table)
        if seq.kv_state is not None:
            self.release(seq.kv_state.release_side_blocks())
        seq.block_table = []
        seq.block_hashes = []

    def _take_free(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self._by_hash.get(block.hash) == block_id:
            del self._by_hash[block.hash]
        block.hash, block.token_ids, block.ref_count = None, (), 1
        return block_id
