"""ThinKV (Ramachandran et al., arXiv 2510.01290): thought-adaptive KV compression of a reasoning trace.

Decode-time: generated tokens are cut into thoughts (segment), each thought is typed reasoning /
execution / transition from the sparsity of its attention (classify), quantised at its type's width
and, when the sequence is over its token budget, evicted from progressively, least important thoughts
first (policy). precog/backend/engine/thinking.py runs it inside the engine and frees the blocks.
"""

from precog.backend.compress.thinkv.classify import (
    IMPORTANCE,
    ThoughtKind,
    attention_sparsity,
    attention_weights,
    classify,
    length_corrected,
)
from precog.backend.compress.thinkv.policy import (
    FULL_BITS,
    ThinKVPolicy,
    Thought,
    generated_budget,
    plan_eviction,
    token_bytes,
)
from precog.backend.compress.thinkv.quantise import quantise_channels, quantise_tokens
from precog.backend.compress.thinkv.segment import delimiter_ids, split_thoughts
from precog.backend.compress.thinkv.state import ThinKVReport, ThinKVState

__all__ = [
    "FULL_BITS",
    "IMPORTANCE",
    "ThinKVPolicy",
    "ThinKVReport",
    "ThinKVState",
    "Thought",
    "ThoughtKind",
    "attention_sparsity",
    "attention_weights",
    "classify",
    "delimiter_ids",
    "generated_budget",
    "length_corrected",
    "plan_eviction",
    "quantise_channels",
    "quantise_tokens",
    "split_thoughts",
    "token_bytes",
]
