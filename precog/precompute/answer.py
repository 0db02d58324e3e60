"""The two conversations the pipeline sends for each question: a grounded one that produces the answer, and
the one a user of the chat app would have had, whose KV cache is captured."""

from __future__ import annotations

import re

from precog.precompute.questions import content_stems
from precog.precompute.upstream import Completion

SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
# Words an answer uses about its source rather than its subject ("According to the document, ...").
SOURCE_WORDS = frozenset(content_stems("according document text passage article mentioned says"))
GROUNDING = "Answer the user's question using the document below. Be brief and factual.\n\nDocument:\n"


def answer_messages(system_prompt: str, chunk: str, question: str) -> list[dict[str, str]]:
    """The app's system prompt plus the chunk, so the answer is grounded in the text it was asked about."""
    system = f"{system_prompt}\n\n{GROUNDING}{chunk}" if system_prompt else f"{GROUNDING}{chunk}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def stored_answer(completion: Completion) -> str:
    """The answer as it may be stored: one cut off at max_tokens keeps only its whole sentences."""
    answer = completion.text.strip()
    return whole_sentences(answer) if completion.truncated else answer


def answer_grounded(answer: str, question: str, chunk: str, share: float = 0.5) -> bool:
    """Whether what `answer` adds to `question` comes from `chunk`: every number in it, and at least
    `share` of its other new content words. Asked about something its chunk does not hold ("What is the
    capital of Alabama?" of a chunk on Alabama's borders and rank), a small model answers from memory or
    makes it up ("Montgomery", "the state bird is the bald eagle"); served from the store, such an answer
    would be a confident one that no document stands behind."""
    in_chunk, in_question = set(content_stems(chunk)), set(content_stems(question))
    new = [s for s in dict.fromkeys(content_stems(answer)) if s not in in_question and s not in SOURCE_WORDS]
    if not new:
        return True
    numbers = [stem for stem in new if stem[0].isdigit()]
    if any(stem not in in_chunk for stem in numbers):
        return False
    return sum(stem in in_chunk for stem in new) >= share * len(new)


def whole_sentences(text: str) -> str:
    """What is left of an answer cut off at max_tokens once the unfinished sentence goes ('' if no
    sentence ended): a stored answer must read as whole, since the gateway serves it as it is."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else ""


def exchange_messages(system_prompt: str, question: str, answer: str) -> list[dict[str, str]]:
    """What the gateway's client sends and gets back on a hit: this is the prefix a next turn continues."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
