"""Keep the attention inputs of chosen rows of a step, for presses that score KV with them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(slots=True)
class HiddenCapture:
    """spans: (per-layer list of chunks to append to, first row, end row) of the flat batch.

    Each layer's attention calls `record` with its normed input [N, hidden]; the rows of every span are
    copied into that span's list for the layer, chunk after chunk, so a chunked prefill accumulates.
    """

    spans: list[tuple[list[list[torch.Tensor]], int, int]] = field(default_factory=list)

    def record(self, layer: int, hidden: torch.Tensor) -> None:
        for chunks, start, end in self.spans:
            chunks[layer].append(hidden[start:end].clone())
