"""The two conversations the pipeline sends for each question: a grounded one that produces the answer, and
the one a user of the chat app would have had, whose KV cache is captured."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from precog.precompute.questions import SENTENCE_BREAK, content_stems
from precog.precompute.upstream import Completion

SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
# Words an answer uses about its source rather than its subject ("According to the document, ...").
SOURCE_WORDS = frozenset(content_stems("according document text passage article mentioned says"))
_ENDS_SENTENCE = re.compile(SENTENCE_END.pattern + "$")
_OPENS_WITH_PRONOUN = re.compile(r"^(it|he|she|they|this|these|his|her|its|their)\b", re.IGNORECASE)
MIN_SENTENCE_WORDS = 4  # shorter "sentences" are titles and headings
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


class ChosenAnswer(NamedTuple):
    """The answer to store and where it comes from: "model", "chunk" (quoted from it), or None when
    there is none to store (`text` is then the model's, empty when not one sentence of it was whole)."""

    text: str
    source: Literal["model", "chunk"] | None


def choose_answer(completion: Completion, question: str, chunk: str, quote_fallback: bool) -> ChosenAnswer:
    """The model's answer (its whole sentences) when its chunk stands behind it; else, with
    `quote_fallback`, the chunk's own sentence that holds the question's words (`supporting_passage`): a
    small model answers most of its questions from memory (SmolLM2-135M: 74% of 256 on the sample), and
    the sentence its question came from is an answer that the document does stand behind."""
    answer = stored_answer(completion)
    if answer and answer_grounded(answer, question, chunk):
        return ChosenAnswer(answer, "model")
    quote = supporting_passage(question, chunk) if quote_fallback else ""
    return ChosenAnswer(quote, "chunk") if quote else ChosenAnswer(answer, None)


def supporting_passage(question: str, chunk: str) -> str:
    """The sentence of `chunk` that holds the most of the question's content words: all of a one-word
    question's, else two at least and half of them, and every number and name of it ("the 17th president"
    is not answered by "the 16th president", nor "the tallest volcano in Asia" by "the tallest volcano in
    Europe"). Only whole sentences count (a heading or a caption is no answer); the first one wins a tie,
    after the sentence before it when it opens with a pronoun ("He was born in Stagira."); '' when none
    does. A heading the chunk opens with (its title: fewer than `MIN_SENTENCE_WORDS` words) counts as part
    of every sentence, since every sentence under it is about it."""
    wanted = set(content_stems(question)) - SOURCE_WORDS
    parts = [part.strip() for part in SENTENCE_BREAK.split(chunk.strip()) if part.strip()]
    heading = set(content_stems(parts[0])) if parts and len(parts[0].split()) < MIN_SENTENCE_WORDS else set()
    sentences = [p for p in parts if len(p.split()) >= MIN_SENTENCE_WORDS and _ENDS_SENTENCE.search(p)]
    named = set(content_stems(" ".join(w for w in question.split()[1:] if w[:1].isupper())))
    required = {stem for stem in wanted if stem[0].isdigit()} | (named & wanted)
    scored = [
        (len(wanted & words), -i)
        for i, words in enumerate(heading | set(content_stems(s)) for s in sentences)
        if required <= words
    ]
    if not wanted or not scored:
        return ""
    found, at = max(scored)
    if found < min(2, len(wanted)) or 2 * found < len(wanted):
        return ""
    best = sentences[-at]
    return f"{sentences[-at - 1]} {best}" if at and _OPENS_WITH_PRONOUN.match(best) else best


def whole_sentences(text: str) -> str:
    """What is left of an answer cut off at max_tokens once the unfinished sentence goes ('' if no
    sentence ended): a stored answer must read as whole, since the gateway serves it as it is."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else ""


def exchange_messages(system_prompt: str, question: str, answer: str) -> list[dict[str, str]]:
    """What the gateway's client sends and gets back on a hit: this is the prefix a next turn continues."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
