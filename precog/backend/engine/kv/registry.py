"""Which policy runs a request's `kv_compression` method: the one place the engine names a method.

A new method is one module with a KVPolicy and one line in `KVPolicies.__init__`.
"""

from __future__ import annotations

import torch

from precog.backend.compress import PRESSES, KVCompression
from precog.backend.engine.kv.base import EngineParts, KVPolicy, KVState
from precog.backend.engine.kv.ojakv import OjaKV
from precog.backend.engine.kv.press import PressPolicy
from precog.backend.engine.kv.thinkv import ThinKVRunner
from precog.backend.engine.sequence import Sequence


class KVPolicies:
    """One policy per method, built once per engine; `thinkv` is public for its per-request reports."""

    def __init__(self, parts: EngineParts) -> None:
        self.counters = parts.counters
        self._dtype = parts.kv_cache.dtype
        self._packed = parts.kv_cache.kv_dtype if parts.kv_cache.packed else None
        self._device = parts.kv_cache.device
        self.thinkv = ThinKVRunner(parts)
        presses = PressPolicy(parts)
        self.by_method: dict[str, KVPolicy] = {
            **dict.fromkeys(PRESSES, presses),
            "ojakv": OjaKV(parts),
            "thinkv": self.thinkv,
        }

    def check(self, compression: KVCompression, sparse: bool) -> None:
        """Raise ValueError if this engine's attention, dtype or pages cannot serve the (validated) option."""
        if compression.active and self._device.type != "cpu":
            raise ValueError(f"kv_compression runs on the cpu device only (this engine: {self._device})")
        if compression.active and compression.method in ("ojakv", "thinkv") and self._packed:
            raise ValueError(
                f"{compression.method} keeps pages of its own (this engine: kv_dtype {self._packed})"
            )
        if compression.active and compression.method == "ojakv" and self._dtype != torch.float32:
            raise ValueError(f"ojakv needs an engine in float32 (this engine: {str(self._dtype)[6:]})")
        if not compression.active or not sparse:
            return
        option = self.by_method[compression.method].dense_only(compression)
        if option is not None:
            raise ValueError(f"{option} needs dense attention (this engine: sparse)")

    def start(self, seq: Sequence, compression: KVCompression | None) -> KVState | None:
        """seq's KV state for an active option (None: keep every token)."""
        if compression is None or not compression.active:
            return None
        return self.by_method[compression.method].start(seq, compression)
