"""Pick each sequence's next token from its logits: greedy rows in one argmax, sampled rows one by one
(each with its own seeded generator, so a seeded request is reproducible whatever it is batched with)."""

from __future__ import annotations

import torch

from precog.backend.engine.sequence import Sequence


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """[V] logits with everything outside top-k and the top-p nucleus set to -inf."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # the tokens before it reach p
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    return logits


@torch.inference_mode()
def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """logits [S, V] (on any device) for seqs -> one token id per sequence: one host copy for the greedy
    ids, one more for the rows that sample (their generators are host generators)."""
    chosen = logits.argmax(dim=-1).tolist()
    sampling = [i for i, seq in enumerate(seqs) if not seq.params.greedy]
    if not sampling:
        return chosen
    rows = logits[sampling].float().cpu()
    for row, i in zip(rows, sampling, strict=True):
        params = seqs[i].params
        filtered = _filter(row / params.temperature, params.top_k, params.top_p)
        probs = torch.softmax(filtered, dim=-1)
        chosen[i] = int(torch.multinomial(probs, 1, generator=seqs[i].generator).item())
    return chosen
