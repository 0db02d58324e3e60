"""Our model and engine against transformers on the same prepared checkpoint.

Tolerance: LOGIT_TOL on logits/logprobs (fp32 everywhere; the two implementations differ only in the
order of floating-point operations, which moves logits by ~1e-4). Greedy decoding must match token for
token; where a sequence diverges, transformers' own top-2 logit gap at that step must be below
LOGIT_TOL, proving a numerical tie rather than a wrong token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backend_prompts import QUESTIONS, chat_prompt_ids
from transformers import AutoModelForCausalLM

from precog.backend import Engine, SamplingParams

LOGIT_TOL = 1e-3
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> AutoModelForCausalLM:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.mark.slow
def test_greedy_matches_transformers_generate(engine: Engine, hf_model: AutoModelForCausalLM) -> None:
    tok = engine.tokenizer
    prompts = [chat_prompt_ids(tok, q) for q in QUESTIONS]
    ours = engine.generate(prompts, SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, logprobs=1))

    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        hf = hf_model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=pad,
        )
    hf_tokens = hf.sequences[:, width:].tolist()
    hf_logits = torch.stack(hf.logits, dim=1)  # [B, steps, vocab]

    eos = engine.eos_token_ids
    compared = ties = 0
    for i, completion in enumerate(ours):
        expected = hf_tokens[i]
        end = next((j + 1 for j, t in enumerate(expected) if t in eos), NEW_TOKENS)
        expected = expected[:end]
        for step, (mine, theirs) in enumerate(zip(completion.token_ids, expected, strict=False)):
            logprobs = torch.log_softmax(hf_logits[i, step], dim=-1)
            if mine != theirs:
                gap = float(hf_logits[i, step, theirs] - hf_logits[i, step, mine])
                assert gap < LOGIT_TOL, (
                    f"prompt {i} diverges at step {step}: ours {mine}, transformers {theirs}, gap {gap:.2e}"
                )
                ties += 1
                break
            assert completion.logprobs is not None
            assert abs(completion.logprobs[step].logprob - float(logprobs[mine])) < LOGIT_TOL
            compared += 1
        else:
            assert completion.token_ids == expected, (
                f"prompt {i}: lengths differ {completion.token_ids} {expected}"
            )
    assert compared >= 0.9 * sum(len(c.token_ids) for c in ours)
    assert ties <= 2


def test_model_logits_match_transformers(engine: Engine, hf_model: AutoModelForCausalLM) -> None:
    """Full-vocabulary logits at every position: a prefill chunk, then decodes, through scattered blocks."""
    from precog.backend.engine.kv_cache import KVCache
    from precog.backend.layers.attention import AttentionMetadata
    from precog.backend.layers.paged_attention import plan_attention

    ids = [*chat_prompt_ids(engine.tokenizer, QUESTIONS[1]), 504, 3458, 282]
    n, blocks = len(ids), -(-len(ids) // 16)
    cache = KVCache(engine.spec, num_blocks=blocks + 3, block_size=16)
    table = list(range(blocks + 2, 2, -1))[:blocks]  # reversed, not starting at block 0
    chunks = [(0, n - 3), (n - 3, n - 2), (n - 2, n - 1), (n - 1, n)]
    ours = []
    with torch.inference_mode():
        for start, end in chunks:
            meta = AttentionMetadata(
                positions=torch.arange(start, end),
                slot_mapping=cache.slots(table, start, end),
                plan=plan_attention([table], [end - start], [end], 16),
                logit_rows=torch.arange(end - start),
            )
            ours.append(engine.model(torch.tensor(ids[start:end]), cache.layers, meta))
        theirs = hf_model(torch.tensor([ids])).logits[0]
    assert (torch.cat(ours) - theirs).abs().max().item() < LOGIT_TOL
