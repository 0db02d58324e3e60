"""Tell thought types apart by attention sparsity (ThinKV, arXiv 2510.01290, section 3).

ThinKV observes that the attention a thought's tokens pay to the context is sparse to a degree that
depends on the thought's role: reasoning (R) spreads attention widely over the context, execution (E,
carrying out a calculation) attends to a few operands, transition (T, "wait", "so", "next") is the
sparsest. Sparsity here is scale-free: 1 - (keys needed to cover `mass` of a query's attention) /
(keys it can see), averaged over query heads, the thought's queries and the sampled layers. Attention
that stays on a fixed few keys looks sparser the longer the context, so before typing we subtract the
trend `slope * ln(keys visible)` (our addition: the paper's traces are long enough not to need it, a
100-token trace is not). The two thresholds split the corrected value into R < t_re <= E < t_et <= T;
the paper calibrates them per model (KDE of the sparsity distribution), we fit the slope and take the
thresholds at the residual tertiles of a calibration run (bench/thinkv_bench.py does and prints it).
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch


class ThoughtKind(StrEnum):
    REASONING = "R"
    EXECUTION = "E"
    TRANSITION = "T"


# Eviction order: the least important kind first (the paper's importance R > E > T).
IMPORTANCE = {ThoughtKind.TRANSITION: 0, ThoughtKind.EXECUTION: 1, ThoughtKind.REASONING: 2}


def attention_weights(
    queries: torch.Tensor, keys: torch.Tensor, query_pos: torch.Tensor, key_pos: torch.Tensor
) -> torch.Tensor:
    """Causal softmax attention [H, n, T] of queries [H, n, D] at query_pos [n] over keys [KVH, T, D]
    at key_pos [T] (any order: a compacted cache holds keys out of position order)."""
    group = queries.shape[0] // keys.shape[0]
    expanded = keys.float().repeat_interleave(group, dim=0)
    logits = queries.float() @ expanded.transpose(1, 2) / math.sqrt(queries.shape[-1])
    future = key_pos[None, :] > query_pos[:, None]
    return torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)


def attention_sparsity(weights: torch.Tensor, visible: torch.Tensor, mass: float = 0.9) -> torch.Tensor:
    """[n] sparsity of each query row of weights [H, n, T] (visible [n]: keys each query may see):
    1 - (fewest keys holding `mass` of the row) / visible, averaged over heads."""
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"attention mass must be in (0, 1], got {mass}")
    ordered = weights.sort(dim=-1, descending=True).values.cumsum(dim=-1)
    needed = (ordered < mass).sum(dim=-1) + 1  # [H, n]
    return (1.0 - needed.float() / visible.float().clamp(min=1)[None, :]).mean(dim=0)


def length_corrected(sparsity: float, visible: float, slope: float) -> float:
    """Sparsity with the context-length trend removed: sparsity - slope * ln(visible)."""
    return sparsity - slope * math.log(max(visible, 1.0))


def classify(sparsity: float, thresholds: tuple[float, float]) -> ThoughtKind:
    """R below thresholds[0], T at or above thresholds[1], E between."""
    low, high = thresholds
    if not low <= high:
        raise ValueError(f"thought thresholds must be ordered, got {thresholds}")
    if sparsity < low:
        return ThoughtKind.REASONING
    if sparsity >= high:
        return ThoughtKind.TRANSITION
    return ThoughtKind.EXECUTION
