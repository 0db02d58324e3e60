"""Which pages a decode query attends to: Quest's upper bound per page, top-k plus sink and recent pages.

For a query q and a page whose keys lie element-wise in [kmin, kmax], every key k in the page has
q·k <= sum_j max(q_j kmin_j, q_j kmax_j) = relu(q)·kmax - relu(-q)·kmin, so ranking pages by this bound
never ranks a page low because of a key it does not hold. The G query heads of a GQA group share one
KV head and so one reduced block table: a page's group score is the largest bound over the group.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PageSelection(NamedTuple):
    """pages [b, KVH, k]: selected page positions in each sequence's block table, ascending, padded with
    M (no page) past `counts` [b, KVH]; the most recent page is always the last real one."""

    pages: torch.Tensor
    counts: torch.Tensor


def page_upper_bounds(q: torch.Tensor, kmin: torch.Tensor, kmax: torch.Tensor) -> torch.Tensor:
    """q [b, KVH, G, D], kmin/kmax [KVH, b, M, D] -> [b, KVH, G, M]: the bound of q·k over each page."""
    heads_first = q.transpose(0, 1)  # [KVH, b, G, D]
    high = torch.matmul(heads_first.clamp(min=0), kmax.transpose(-1, -2))
    low = torch.matmul((-heads_first).clamp(min=0), kmin.transpose(-1, -2))
    return (high - low).transpose(0, 1)


def select_pages(
    bounds: torch.Tensor, num_pages: torch.Tensor, budget_pages: int, sink_pages: int
) -> PageSelection:
    """bounds [b, KVH, G, M], num_pages [b] -> the top `budget_pages` pages per (sequence, KV head).

    The first `sink_pages` pages and the last (most recent, possibly partial) page are always taken and
    count against the budget; a sequence with at most `budget_pages` pages keeps them all (dense).
    """
    if budget_pages < sink_pages + 1:
        raise ValueError(f"a budget of {budget_pages} pages cannot hold {sink_pages} sink pages + 1 recent")
    m = bounds.shape[-1]
    score = bounds.amax(dim=2)  # [b, KVH, M]
    index = torch.arange(m)[None, :]
    valid = index < num_pages[:, None]
    forced = (index < sink_pages) | (index == num_pages[:, None] - 1)
    score = score.masked_fill(forced[:, None], float("inf")).masked_fill(~valid[:, None], float("-inf"))
    k = min(budget_pages, m)
    top = score.topk(k, dim=-1)
    taken = top.values > float("-inf")
    pages = torch.where(taken, top.indices, torch.full_like(top.indices, m)).sort(dim=-1).values
    return PageSelection(pages, taken.sum(dim=-1))
