"""KV-cache compression presses: score a layer's cached prompt tokens and keep the best share.

`KVCompression(method, ratio, protected)` is the per-request option; the engine runs its press after
the prompt's prefill and compacts the kept tokens into fewer blocks (see precog/backend/engine/compaction.py).
"""

from precog.backend.compress.base import LayerInputs, ScorerPress
from precog.backend.compress.expected_attention import ExpectedAttentionPress
from precog.backend.compress.knorm import KnormPress
from precog.backend.compress.oja import OjaKVSettings, oja_update, rank_for_ratio
from precog.backend.compress.oja_calibration import PCABases
from precog.backend.compress.random_press import RandomPress
from precog.backend.compress.request import (
    DECODE_METHODS,
    METHODS,
    OJAKV,
    PRESSES,
    CompressionMethod,
    KVCompression,
)
from precog.backend.compress.snapkv import SnapKVPress
from precog.backend.compress.streaming_llm import StreamingLLMPress

__all__ = [
    "DECODE_METHODS",
    "METHODS",
    "OJAKV",
    "PRESSES",
    "CompressionMethod",
    "ExpectedAttentionPress",
    "KVCompression",
    "KnormPress",
    "LayerInputs",
    "OjaKVSettings",
    "PCABases",
    "RandomPress",
    "ScorerPress",
    "SnapKVPress",
    "StreamingLLMPress",
    "oja_update",
    "rank_for_ratio",
]
