"""The gateway's parts, built and torn down together; one instance per app, no module-level state."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

import torch

from precog.gateway.batcher import EmbeddingBatcher
from precog.gateway.conversation import NextTurnIndex
from precog.gateway.errors import GatewayError
from precog.gateway.lookup import CandidateGuard, Lookup
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.models import ModelCatalog
from precog.gateway.proxy import CompletionProxy
from precog.gateway.settings import GatewaySettings
from precog.gateway.shared_tier import Invalidation, SharedTier
from precog.gateway.snapshot_follower import SnapshotFollower, open_snapshot, wait_for_snapshot
from precog.gateway.stats import Stats
from precog.gateway.store_access import StoreAccess
from precog.gateway.upstream import Upstream
from precog.gateway.writeback import WriteBack
from precog.store import Embedder, Store

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    settings: GatewaySettings
    store: StoreAccess
    embedder: Any
    upstream: Upstream
    models: ModelCatalog
    batcher: EmbeddingBatcher
    writeback: WriteBack
    shared: SharedTier | None
    stats: Stats
    metrics: GatewayMetrics
    proxy: CompletionProxy
    owns_store: bool
    follower: SnapshotFollower | None = None

    @classmethod
    async def start(
        cls,
        settings: GatewaySettings,
        store: Store | None = None,
        embedder: Any = None,
        guard: CandidateGuard | None = None,
    ) -> Gateway:
        """Open the store (unless given), load the embedder and guard (unless given), start the workers."""
        # Short texts gain nothing from intra-op parallelism, and on a loaded machine two threads waiting
        # for each other made one embedding 10-30x slower than one thread (measured: 250-650 ms vs 20 ms).
        torch.set_num_threads(settings.embed_threads)
        if embedder is None:
            embedder = Embedder()
        if store is not None and settings.store_role == "replica":
            raise ValueError("a replica opens the published snapshot itself; pass no store")
        owns_store = store is None
        snapshot = None
        if store is None and settings.store_role == "replica":
            assert settings.snapshot_root is not None  # checked by the settings
            snapshot = await wait_for_snapshot(
                settings.snapshot_root, settings.snapshot_wait_s, settings.snapshot_poll_s
            )
            store = await asyncio.to_thread(open_snapshot, snapshot)
        elif store is None:
            store = Store.open(settings.store_path, embedding_model=embedder.name, dim=embedder.dim)
        if guard is None:
            from precog.gateway.guard import Guard

            guard = cast(CandidateGuard, Guard())
        access = StoreAccess(store, snapshot=snapshot)
        follower = (
            None
            if snapshot is None
            else SnapshotFollower(access, snapshot.path.parent, settings.snapshot_poll_s)
        )
        metrics = GatewayMetrics()
        stats = Stats(settings.cost_per_1k_tokens)
        upstream = Upstream(settings, metrics)
        shared = SharedTier(settings.redis_url, settings.redis_timeout_s) if settings.redis_url else None
        batcher = EmbeddingBatcher(
            embedder.encode,
            settings.embed_batch_max,
            settings.embed_batch_window_ms,
            on_batch=metrics.embed_batch_size.observe,
            cache_size=settings.embed_cache_size,
        )
        lookup = Lookup(
            access,
            batcher,
            guard,
            settings.threshold_for,
            metrics,
            shared,
            settings.search_k,
            settings.kv_reuse_min_similarity if settings.kv_reuse else None,
        )
        writeback = WriteBack(settings, access, batcher, metrics, shared, replica=snapshot is not None)
        proxy = CompletionProxy(
            settings,
            access,
            lookup,
            upstream,
            writeback,
            NextTurnIndex(shared),
            stats,
            metrics,
            shared,
        )
        gateway = cls(
            settings,
            access,
            embedder,
            upstream,
            ModelCatalog(settings, upstream),
            batcher,
            writeback,
            shared,
            stats,
            metrics,
            proxy,
            owns_store,
            follower,
        )
        metrics.watch(
            breaker_state=lambda: float(upstream.breaker.state),
            hit_rate=stats.hit_rate,
            shared_tier_up=lambda: float(shared is not None and shared.up),
        )
        batcher.start()
        await batcher.embed("warm up the embedding model before the first request")
        writeback.start()
        if shared is not None:
            await shared.start(gateway.apply_invalidation)
        if gateway.follower is not None:
            gateway.follower.start()
        log.info(
            "gateway started",
            extra={
                "upstream": settings.upstream_url,
                "store": str(settings.store_path),
                "shared_tier": bool(shared),
                "store_role": settings.store_role,
                "open_tenancy": settings.open_tenancy,
            },
        )
        return gateway

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()
        await self.writeback.stop()
        await self.batcher.stop()
        if self.shared is not None:
            await self.shared.stop()
        await self.upstream.aclose()
        if self.owns_store:
            self.store.close()

    @property
    def replica(self) -> bool:
        """Serving a read-only snapshot; the store writer persists write-backs and invalidations."""
        return self.follower is not None

    async def apply_invalidation(self, invalidation: Invalidation, stream_id: str | None = None) -> int:
        """Drop matching entries from this replica's store (a broadcast from another replica, or our own);
        a replica of a read-only snapshot masks them until a snapshot without them arrives."""
        if self.replica:
            if stream_id is None:
                raise ValueError("a replica needs the invalidation's stream id to know when to unmask it")
            self.store.mask(invalidation, stream_id)
            return await self.store.count_matching(invalidation)
        return await self.store.invalidate(
            ids=list(invalidation.ids) or None,
            scope=invalidation.scope,
            substring=invalidation.substring,
            older_than=invalidation.older_than_s,
        )

    async def invalidate(self, invalidation: Invalidation) -> int:
        """Apply here, then broadcast to the other replicas through the shared tier.

        A replica cannot apply anything for good without the store writer, so without Redis it refuses."""
        if self.replica:
            assert self.shared is not None  # replicas always have the shared tier (settings check)
            stream_id = await self.shared.publish_invalidation(invalidation)
            if stream_id is None:
                raise GatewayError(
                    503,
                    "the shared tier is down, so the store writer cannot be told; try again",
                    code="shared_tier_down",
                )
            return await self.apply_invalidation(invalidation, stream_id)
        removed = await self.apply_invalidation(invalidation)
        if self.shared is not None:
            await self.shared.publish_invalidation(invalidation)
        return removed
