"""The Redis tier shared by gateway replicas: exact answers, hot entries, counters and invalidations.

Every key carries the scope, and the scope hashes the tenant, so nothing in Redis crosses tenants.
Redis is an accelerator, never a dependency: each call has a short timeout, and the first failure
marks the tier down; the gateway then serves from its local store only, a probe reconnects, and on
recovery the invalidations broadcast meanwhile are replayed from the Redis stream they were written
to (a stream rather than plain PUBLISH so that a replica that was cut off misses none).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from precog.gateway.replication.write_queue import WRITEBACKS, encode_entry
from precog.gateway.shared import HotEntry, Invalidation
from precog.store import Entry, normalise_text

log = logging.getLogger(__name__)

_PREFIX = "precog:"
INVALIDATIONS = _PREFIX + "invalidations"
_COUNTERS = _PREFIX + "counters"
_REPLICAS = _PREFIX + "replicas"
_REPLICA_ALIVE_S = 5.0
_REPLICA_FORGET_S = 24 * 3600.0
_HOT_TTL_S = 3600
_PROBE_S = 0.5


def _exact_key(scope: str, question: str) -> str:
    digest = hashlib.blake2b(normalise_text(question).encode(), digest_size=16).hexdigest()
    return f"{_PREFIX}exact:{scope}:{digest}"


class SharedTier:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.replica = uuid.uuid4().hex[:12]
        # Lookups use the short timeout (a slow Redis must not slow requests down); everything off the
        # request path (stream reads, the write-back hand-off, counters, stats) may wait longer.
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._patient = aioredis.Redis.from_url(url, socket_timeout=3.0, socket_connect_timeout=timeout_s)
        self.up = False
        self._counts: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_stream_id = "0-0"
        self._on_invalidation: Callable[[Invalidation, str], Awaitable[Any]] | None = None

    async def start(self, on_invalidation: Callable[[Invalidation, str], Awaitable[Any]]) -> None:
        """Connect, and apply every invalidation another replica broadcasts from now on
        (`on_invalidation` gets it with its stream id)."""
        self._on_invalidation = on_invalidation
        await self._probe()
        if self.up:
            with contextlib.suppress(RedisError, OSError):
                latest: Any = await self._redis.xrevrange(INVALIDATIONS, count=1)
                self._last_stream_id = latest[0][0].decode() if latest else "0-0"
        self._tasks = [
            asyncio.create_task(self._follow_invalidations(), name="redis-invalidations"),
            asyncio.create_task(self._maintain(), name="redis-maintain"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._flush_counts()
        await self._redis.aclose()
        await self._patient.aclose()

    def _down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("shared tier down, serving from the local store", extra={"error": repr(exc)})
        self.up = False

    async def _probe(self) -> None:
        if not self.up:  # pooled connections from before Redis went away are dead: start afresh
            for client in (self._redis, self._patient):
                with contextlib.suppress(RedisError, OSError):
                    await client.connection_pool.disconnect()
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return
        if not self.up:
            log.info("shared tier up", extra={"replica": self.replica})
        self.up = True

    async def _call(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis operation, or return None (and go degraded) when Redis fails."""
        if not self.up:
            return None
        try:
            return await op()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return None

    async def get_exact(self, scope: str, question: str) -> HotEntry | None:
        raw = await self._call(lambda: self._redis.get(_exact_key(scope, question)))
        if raw is None:
            return None
        entry = HotEntry(**json.loads(raw))
        return None if entry.expires is not None and entry.expires <= time.time() else entry

    async def put_exact(self, entry: HotEntry) -> None:
        ttl = _HOT_TTL_S if entry.expires is None else int(min(_HOT_TTL_S, entry.expires - time.time()))
        if ttl <= 0:
            return
        key = _exact_key(entry.scope, entry.query)

        async def write() -> None:
            async with self._patient.pipeline(transaction=False) as pipe:
                pipe.set(key, json.dumps(asdict(entry)), ex=ttl)
                pipe.set(f"{_PREFIX}entry:{entry.id}", key, ex=ttl)
                await pipe.execute()

        await self._call(write)

    async def remember_next_turn(self, scope: str, kv_blob_id: str, ttl_s: int = _HOT_TTL_S) -> None:
        await self._call(lambda: self._redis.set(f"{_PREFIX}next:{scope}", kv_blob_id, ex=ttl_s))

    async def next_turn_blob(self, scope: str) -> str | None:
        raw = await self._call(lambda: self._redis.get(f"{_PREFIX}next:{scope}"))
        return raw.decode() if raw is not None else None

    def count(self, tenant: str, model: str, outcome: str) -> None:
        """Counted locally and flushed to Redis once a second (kept while Redis is down)."""
        self._counts[f"{tenant}|{model}|{outcome}"] += 1

    async def counters(self) -> dict[str, int] | None:
        raw = await self._call(lambda: self._patient.hgetall(_COUNTERS))
        return None if raw is None else {k.decode(): int(v) for k, v in raw.items()}

    async def _flush_counts(self) -> None:
        if not self._counts or not self.up:
            return
        pending, self._counts = self._counts, Counter()

        async def flush() -> bool:
            async with self._patient.pipeline(transaction=False) as pipe:
                for field_name, n in pending.items():
                    pipe.hincrby(_COUNTERS, field_name, n)
                await pipe.execute()
            return True

        if await self._call(flush) is None:
            self._counts.update(pending)

    async def publish_invalidation(self, invalidation: Invalidation) -> str | None:
        """Drop matching Redis entries and tell every replica (this one has applied it already) and the
        store writer; returns the stream id, or None when Redis is down and nobody was told."""
        await self._call(lambda: self._drop_matching(invalidation))
        fields: dict[Any, Any] = {"origin": self.replica, "body": invalidation.to_json()}
        added = await self._call(
            lambda: self._patient.xadd(INVALIDATIONS, fields, maxlen=10_000, approximate=True)
        )
        return None if added is None else added.decode()

    async def enqueue_write(self, entry: Entry) -> str | None:
        """Hand a write-back to the store writer; its stream id once Redis holds it (acknowledged), else None.

        Sent on the connection with the longer timeout: with appendfsync the reply waits for the disk."""
        fields: dict[Any, Any] = encode_entry(entry)
        added = await self._call(lambda: self._patient.xadd(WRITEBACKS, fields))
        return None if added is None else added.decode()

    async def cluster(self) -> dict[str, Any] | None:
        """Totals over every replica: live replicas, requests by outcome and tenant, hit rate."""
        counters = await self.counters()
        seen = await self._call(lambda: self._patient.hgetall(_REPLICAS))
        if counters is None or seen is None:
            return None
        now = time.time()
        outcomes: Counter[str] = Counter()
        tenants: dict[str, Counter[str]] = {}
        for key, n in counters.items():
            tenant, outcome = key.split("|", 1)[0], key.rsplit("|", 1)[-1]
            outcomes[outcome] += n
            tenants.setdefault(tenant, Counter())[outcome] += n
        gone = [replica for replica, at in seen.items() if now - float(at) > _REPLICA_FORGET_S]
        if gone:
            await self._call(lambda: self._patient.hdel(_REPLICAS, *gone))
        cacheable = outcomes["hit"] + outcomes["miss"]
        return {
            "replicas": sum(1 for at in seen.values() if now - float(at) < _REPLICA_ALIVE_S),
            "requests": sum(outcomes.values()),
            **outcomes,
            "hit_rate": round(outcomes["hit"] / cacheable, 4) if cacheable else None,
            "by_tenant": {tenant: dict(c) for tenant, c in sorted(tenants.items())},
        }

    async def _drop_matching(self, invalidation: Invalidation) -> None:
        pattern = f"{_PREFIX}exact:{invalidation.scope or '*'}:*"
        async for key in self._patient.scan_iter(match=pattern, count=500):
            raw = await self._patient.get(key)
            if raw is not None and invalidation.matches(HotEntry(**json.loads(raw))):
                entry_id = json.loads(raw)["id"]
                await self._patient.delete(key, f"{_PREFIX}entry:{entry_id}")

    async def _follow_invalidations(self) -> None:
        while True:
            if not self.up:
                await asyncio.sleep(_PROBE_S)
                continue
            try:
                batches: Any = await self._patient.xread(
                    {INVALIDATIONS: self._last_stream_id}, block=1000, count=100
                )
            except (RedisError, OSError) as exc:
                self._down(exc)
                continue
            for _, messages in batches or ():
                for message_id, fields in messages:
                    self._last_stream_id = message_id.decode()
                    if fields.get(b"origin", b"").decode() == self.replica or self._on_invalidation is None:
                        continue
                    try:
                        await self._on_invalidation(
                            Invalidation.from_json(fields[b"body"]), self._last_stream_id
                        )
                    except Exception:  # one bad message must not stop the follower
                        log.exception("could not apply a broadcast invalidation")

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_S if not self.up else 1.0)
            if not self.up:
                await self._probe()
            await self._flush_counts()
            await self._call(lambda: self._patient.hset(_REPLICAS, self.replica, str(time.time())))
