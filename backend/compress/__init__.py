"""KV-cache compression presses: score a layer's cached prompt tokens and keep the best share.

`KVCompression(method, ratio, protected)` is the per-request option; the engine runs its press after
the prompt's prefill and compacts the kept tokens into fewer blocks (see backend/engine/compaction.py).
"""

from backend.compress.base import LayerInputs, ScorerPress
from backend.compress.expected_attention import ExpectedAttentionPress
from backend.compress.knorm import KnormPress
from backend.compress.oja import OjaKVSettings, oja_update, rank_for_ratio
from backend.compress.oja_calibration import PCABases
from backend.compress.random_press import RandomPress
from backend.compress.request import (
    DECODE_METHODS,
    METHODS,
    OJAKV,
    PRESSES,
    CompressionMethod,
    KVCompression,
)
from backend.compress.snapkv import SnapKVPress
from backend.compress.streaming_llm import StreamingLLMPress

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
