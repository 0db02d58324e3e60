"""Scale-out: what lets many gateway replicas serve one store. The Redis tier they share (exact answers,
counters, invalidations), the write-back queue to the one store writer, the writer itself, the replicas'
snapshot follower, and the policy that applies invalidations across them. The request path never imports
this package; it speaks to the shared tier through `precog.gateway.shared`."""

from precog.gateway.replication.policy import Replication
from precog.gateway.replication.shared_tier import SharedTier
from precog.gateway.replication.snapshot_follower import SnapshotFollower, open_snapshot, wait_for_snapshot
from precog.gateway.replication.store_writer import StoreWriter

__all__ = [
    "Replication",
    "SharedTier",
    "SnapshotFollower",
    "StoreWriter",
    "open_snapshot",
    "wait_for_snapshot",
]
