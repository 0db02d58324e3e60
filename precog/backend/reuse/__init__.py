"""Semantic KV reuse (SemShareKV, arXiv 2509.24832): prefill a prompt from a similar prompt's stored KV.

Tokens of the new prompt are matched to the reference prompt's tokens by LSH over RoPE-rotated input
embeddings (lsh.py); matched tokens take the reference K/V with keys re-rotated to their new positions
(rerotate.py); layer 0 and, in deeper layers, a shrinking share of tokens that deviate most or draw most
attention are recomputed (schedule.py, reuse_prefill.py). A request opts in with `KVReuse`.
"""

from precog.backend.reuse.lsh import LSHConfig, LSHMatcher, TokenMatch, token_space
from precog.backend.reuse.reference import KVReuse, ReuseStats, check_reference
from precog.backend.reuse.rerotate import rerotate_keys, rope_embeddings, rotation
from precog.backend.reuse.reuse_prefill import ReuseResult, match_tokens, reuse_prefill
from precog.backend.reuse.schedule import Preset, RecomputeSchedule

__all__ = [
    "KVReuse",
    "LSHConfig",
    "LSHMatcher",
    "Preset",
    "RecomputeSchedule",
    "ReuseResult",
    "ReuseStats",
    "TokenMatch",
    "check_reference",
    "match_tokens",
    "rerotate_keys",
    "reuse_prefill",
    "rope_embeddings",
    "rotation",
    "token_space",
]
