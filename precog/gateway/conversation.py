"""Where a conversation continues after a hit: the next turn's scope → the stored exchange's KV blob.

When a stored answer with a KV blob is served, the client's next turn repeats that exchange as history;
relaying it with `kv_blob_id` lets the backend import the stored KV instead of prefilling it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from precog.gateway.shared import SharedCache

_CAPACITY = 50_000
_TTL_S = 3600.0


class NextTurnIndex:
    def __init__(self, shared: SharedCache | None = None) -> None:
        self._shared = shared
        self._local: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def remember(self, next_scope: str, kv_blob_id: str) -> None:
        self._local[next_scope] = (kv_blob_id, time.monotonic() + _TTL_S)
        self._local.move_to_end(next_scope)
        while len(self._local) > _CAPACITY:
            self._local.popitem(last=False)
        if self._shared is not None:
            await self._shared.remember_next_turn(next_scope, kv_blob_id, int(_TTL_S))

    async def blob_for(self, scope: str) -> str | None:
        found = self._local.get(scope)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        if self._shared is not None:
            return await self._shared.next_turn_blob(scope)
        return None
