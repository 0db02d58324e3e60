"""Tile sizes for Triton: power-of-two extents, at least 16 wherever a tile feeds tl.dot."""

from __future__ import annotations

import triton


def dot_extent(n: int) -> int:
    """Smallest power of two ≥ n and ≥ 16 (tl.dot's minimum operand extent)."""
    return max(16, triton.next_power_of_2(n))
