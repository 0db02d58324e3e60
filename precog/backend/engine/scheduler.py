"""Continuous batching: each step mixes running decodes, prefill chunks and newly admitted requests.

A request whose prompt is still arriving (RServe's overlap) runs on its ready prefix and then simply
takes no tokens until more arrives, so it never stalls the others.

Running sequences go first, oldest first, each taking the tokens it still needs (one for a decode, a
chunk for a long prompt) from the step's token budget. When a running sequence needs a block and none
is free, the newest running sequence is preempted: its blocks are freed and it waits, first in line,
to be recomputed (its prefix may still be in the prefix cache). Waiting requests are admitted only in
steps without preemption, while sequences, tokens and blocks allow. With a working-set limit (sparse
attention), the running sequences' fast-tier working sets must fit too: a request waits until it does,
and the newest running sequences are preempted while the sum is over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from precog.backend.engine.block_manager import BlockManager
from precog.backend.engine.sequence import Sequence, Status


@dataclass(frozen=True, slots=True)
class KVImport:
    """Positions [start, end) of seq's KV to write before the step (a KV-prefix copy, or a
    semantic-reuse prefill)."""

    seq: Sequence
    start: int
    end: int


@dataclass(slots=True)
class ScheduledBatch:
    """seqs[i] computes num_new[i] tokens this step, after the imports are written."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new: list[int] = field(default_factory=list)
    imports: list[KVImport] = field(default_factory=list)

    def add(self, seq: Sequence, num_new: int) -> None:
        self.seqs.append(seq)
        self.num_new.append(num_new)

    def __len__(self) -> int:
        return len(self.seqs)


class WorkingSetLimit(Protocol):
    def fits(self, seqs: Iterable[Sequence]) -> bool: ...


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        working_set: WorkingSetLimit | None = None,
    ) -> None:
        self.block_manager = block_manager
        self.working_set = working_set
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        self.preemptions = 0

    def has_work(self) -> bool:
        """Whether a step would compute anything (a running prompt waiting for its next part would not)."""
        return bool(self.waiting) or any(seq.num_uncomputed for seq in self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out of the queues and free its blocks."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = Status.FINISHED

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.max_num_batched_tokens
        preempted = False
        limit = self.working_set
        while limit is not None and len(self.running) > 1 and not limit.fits(self.running):
            self._preempt(self.running.pop())
            preempted = True
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_uncomputed, budget)
            if n == 0:
                i += 1
                continue
            scheduled = True
            while not self.block_manager.grow(seq, seq.num_cached_tokens + n):
                victim = self.running.pop()
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    scheduled = False
                    break
            if scheduled:
                batch.add(seq, n)
                budget -= n
                i += 1
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            n = self._admit(self.waiting[0], budget, batch)
            if n == 0:
                break
            budget -= n
        return batch

    def update(self, batch: ScheduledBatch) -> None:
        """After the model ran: the scheduled tokens have KV now; full blocks join the prefix cache."""
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            seq.num_computed_tokens += n
            self.block_manager.commit(seq)

    def _admit(self, seq: Sequence, budget: int, batch: ScheduledBatch) -> int:
        """Admit the first waiting sequence if its first chunk fits; return the tokens it takes (0: none)."""
        bm = self.block_manager
        hits = bm.cached_prefix(seq)
        start = len(hits) * bm.block_size
        computed = start
        blob = seq.request.kv_prefix
        if blob is not None:
            computed = max(start, min(len(blob.token_ids), seq.num_tokens - 1))
        if seq.request.kv_reuse is not None:
            computed = seq.num_tokens - 1  # filled by the runner's reuse prefill; the last token runs here
        n = min(seq.num_tokens - computed, budget)
        if self.working_set is not None and self.running and not self.working_set.fits([*self.running, seq]):
            return 0
        if not bm.can_admit(hits, computed + n):
            return 0
        self.waiting.popleft()
        bm.admit(seq, hits)
        bm.grow(seq, computed + n)
        if computed > start:
            batch.imports.append(KVImport(seq, start, computed))
            seq.num_computed_tokens = computed
        self.prefix_cache_queries += seq.num_tokens
        self.prefix_cache_hits += start
        if seq.cached_tokens is None:  # reused KV is approximate: it never counts as cached
            seq.cached_tokens = start if seq.request.kv_reuse is not None else computed
        seq.status = Status.RUNNING
        self.running.append(seq)
        batch.add(seq, n)
        return n

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.reset_for_recompute()
        self.waiting.appendleft(seq)
        self.preemptions += 1
