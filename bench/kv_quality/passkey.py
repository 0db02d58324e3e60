"""Passkey retrieval (as in RULER and the Expected Attention paper): a five-digit key hidden at a chosen
depth of repetitive filler text, asked for at the end. The assistant turn is primed with "The pass key
is" so that a small model answers with the digits and nothing else needs parsing."""

from __future__ import annotations

import random
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

INTRO = (
    "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the pass key.\n"
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\nWhat is the pass key?"
PRIMER = "The pass key is"


@dataclass(frozen=True, slots=True)
class PasskeyCase:
    token_ids: list[int]
    key: str
    depth: float


def passkey_cases(
    tokenizer: PreTrainedTokenizerBase, num_tokens: int, depths: list[float], seed: int = 0
) -> list[PasskeyCase]:
    """One prompt of about num_tokens tokens (never more) per depth in [0, 1] of the filler."""
    rng = random.Random(seed)
    filler_ids = tokenizer.encode(FILLER * (num_tokens // 10 + 10), add_special_tokens=False)
    cases = []
    for depth in depths:
        key = str(rng.randrange(10_000, 100_000))
        needle = f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n"
        budget = num_tokens
        while True:  # shrink the filler until the templated prompt fits
            body = filler_ids[:budget]
            split = int(len(body) * depth)
            user = INTRO + tokenizer.decode(body[:split]) + needle + tokenizer.decode(body[split:]) + QUESTION
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(str(text) + PRIMER, add_special_tokens=False).input_ids
            if len(ids) <= num_tokens:
                break
            budget -= len(ids) - num_tokens
        cases.append(PasskeyCase(list(ids), key, depth))
    return cases


def retrieved(text: str, case: PasskeyCase) -> bool:
    """Whether the completion's first number is the key."""
    digits = "".join(ch if ch.isdigit() else " " for ch in text).split()
    return bool(digits) and digits[0] == case.key
