"""Store an exchange's KV only where loading it beats computing it again.

Both sides are measured in this run: the prefill throughput from the backend's KV exports (tokens per
second of wall time, the HTTP round trip included), and the load time by reading the entry's stored blob
back (its bytes from the store, decoded). On a CPU loading wins by far; on a GPU a short exchange is
prefilled faster than it is read, and its blob is not kept.
"""

from __future__ import annotations

import time

from precog.precompute.records import KVCaptured
from precog.store import Store


def prefill_tokens_per_s(captured: list[KVCaptured]) -> float | None:
    """Tokens per second over the timed exports of `captured` (the caller passes the recent ones)."""
    timed = [record for record in captured if record.seconds > 0 and record.kv_tokens > 0]
    if not timed:
        return None
    return sum(r.kv_tokens for r in timed) / sum(r.seconds for r in timed)


def recompute_is_faster(store: Store, blob_id: str, tokens: int, tokens_per_s: float | None) -> str | None:
    """Why the stored blob should go (prefill is faster than loading it), or None to keep it."""
    if tokens_per_s is None or tokens <= 0:
        return None
    start = time.perf_counter()
    store.get_blob(blob_id)
    load_s = time.perf_counter() - start
    prefill_s = tokens / tokens_per_s
    if load_s < prefill_s:
        return None
    return (
        f"prefill of {tokens} tokens ({1000 * prefill_s:.1f} ms) beats loading them ({1000 * load_s:.1f} ms)"
    )
