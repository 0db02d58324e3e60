"""KV methods in the engine behind one interface (KVPolicy) and one registry (KVPolicies)."""

from precog.backend.engine.kv.base import (
    AttentionExtras,
    EngineParts,
    HeadMask,
    KVCounters,
    KVPolicy,
    KVState,
    RowSpan,
)
from precog.backend.engine.kv.lowrank_cache import plan_lowrank
from precog.backend.engine.kv.ojakv import OjaKVState
from precog.backend.engine.kv.press import PressState
from precog.backend.engine.kv.registry import KVPolicies
from precog.backend.engine.kv.thinkv import ThinKVRunner, ThinKVSequence

__all__ = [
    "AttentionExtras",
    "EngineParts",
    "HeadMask",
    "KVCounters",
    "KVPolicies",
    "KVPolicy",
    "KVState",
    "OjaKVState",
    "PressState",
    "RowSpan",
    "ThinKVRunner",
    "ThinKVSequence",
    "plan_lowrank",
]
