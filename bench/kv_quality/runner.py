"""Run one batch of prompts under one compression setting and measure what it held and how fast it decoded."""

from __future__ import annotations

import time
from dataclasses import dataclass

from precog.backend import Completion, Engine, KVCompression, Request, SamplingParams


@dataclass(frozen=True, slots=True)
class BatchResult:
    """texts: each prompt's greedy completion; kv_blocks_held: blocks in use at the first step in which
    every sequence decodes (all prompts prefilled and compressed); decode tokens and seconds: over the
    steps that only decoded."""

    texts: list[str]
    kv_blocks_held: int
    decode_tokens: int
    decode_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s else 0.0


def run_batch(
    engine: Engine,
    prompts: list[list[int]],
    compressions: list[KVCompression],
    max_tokens: int,
    tag: str,
    ignore_eos: bool = True,
) -> BatchResult:
    """Greedy completions of every prompt (prompt i compressed with compressions[i]), stepped here."""
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos)
    done: dict[str, Completion] = {}
    ids = [f"{tag}-{i}" for i in range(len(prompts))]
    for request_id, prompt, compression in zip(ids, prompts, compressions, strict=True):
        engine.submit(
            Request(
                request_id,
                prompt,
                params,
                compression=compression,
                on_finish=lambda c: done.__setitem__(c.request_id, c),
            )
        )
    held, decode_tokens, decode_s = -1, 0, 0.0
    while engine.has_work():
        before = engine.stats()
        start = time.perf_counter()
        engine.step()
        elapsed = time.perf_counter() - start
        after = engine.stats()
        if after.prompt_tokens == before.prompt_tokens and after.generation_tokens > before.generation_tokens:
            if held < 0:
                held = before.kv_blocks_used
            decode_tokens += after.generation_tokens - before.generation_tokens
            decode_s += elapsed
    return BatchResult([done[i].text for i in ids], held, decode_tokens, decode_s)
