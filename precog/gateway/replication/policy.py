"""How one gateway takes part in a group of replicas: which store it serves (its own, or the published
snapshot it follows), and how an invalidation reaches every replica and the store writer."""

from __future__ import annotations

import asyncio

from precog.gateway.errors import GatewayError
from precog.gateway.replication.shared_tier import SharedTier
from precog.gateway.replication.snapshot_follower import SnapshotFollower, open_snapshot, wait_for_snapshot
from precog.gateway.settings import GatewaySettings
from precog.gateway.shared import Invalidation
from precog.gateway.store_access import StoreAccess
from precog.store import Store


class Replication:
    def __init__(
        self, store: StoreAccess, shared: SharedTier | None, follower: SnapshotFollower | None
    ) -> None:
        self.store = store
        self.shared = shared
        self.follower = follower

    @classmethod
    def local(cls, settings: GatewaySettings, store: Store) -> Replication:
        """A gateway serving `store` itself (the local role), with the shared tier when Redis is set."""
        return cls(StoreAccess(store), cls._shared_tier(settings), None)

    @classmethod
    async def follow(cls, settings: GatewaySettings) -> Replication:
        """A replica: it serves the published snapshot, waiting for the first, and swaps in each newer one."""
        assert settings.snapshot_root is not None  # checked by the settings
        snapshot = await wait_for_snapshot(
            settings.snapshot_root, settings.snapshot_wait_s, settings.snapshot_poll_s
        )
        access = StoreAccess(await asyncio.to_thread(open_snapshot, snapshot), snapshot=snapshot)
        follower = SnapshotFollower(access, snapshot.path.parent, settings.snapshot_poll_s)
        return cls(access, cls._shared_tier(settings), follower)

    @staticmethod
    def _shared_tier(settings: GatewaySettings) -> SharedTier | None:
        return SharedTier(settings.redis_url, settings.redis_timeout_s) if settings.redis_url else None

    @property
    def replica(self) -> bool:
        """Serving a read-only snapshot; the store writer persists write-backs and invalidations."""
        return self.follower is not None

    async def start(self) -> None:
        if self.shared is not None:
            await self.shared.start(self.apply)
        if self.follower is not None:
            self.follower.start()

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()
        if self.shared is not None:
            await self.shared.stop()

    async def apply(self, invalidation: Invalidation, stream_id: str | None = None) -> int:
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
            return await self.apply(invalidation, stream_id)
        removed = await self.apply(invalidation)
        if self.shared is not None:
            await self.shared.publish_invalidation(invalidation)
        return removed
