"""Question generation for one chunk: rounds of prompting with the questions it already has masked in,
until it has enough questions or runs out of rounds. The same loop serves the local and the Ray engine;
they differ only in how a round's questions are judged and recorded.

Rounds take turns over the question writers (the upstream first), and each writer's own turns take turns
over the prompt families, so every writer is asked every way about every passage window."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from precog.precompute.chunking import Chunk
from precog.precompute.questions import AdaptiveAsking, grounded, parse_questions, passage, question_prompt
from precog.precompute.settings import PrecomputeSettings
from precog.precompute.upstream import Completion, UpstreamGarbage
from precog.precompute.worklog import Outcome
from precog.store import normalise_text

ChatCall = Callable[[list[dict[str, str]], float, int, int], Completion]
# The prompt family of each round, in turn (see precog.precompute.questions); every other round asks about
# one sentence, since a chunk has many more sentences than the other families have windows.
FAMILIES = ("sentence", "plain", "sentence", "example", "sentence", "passage")
SENTENCE_QUESTIONS = 3  # what one sentence holds, asked for in a sentence round


@dataclass(slots=True)
class ChunkProgress:
    """Where a chunk stands: replayed from the work log on resume."""

    asked: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def next_round(self) -> int:
        return self.outcomes[-1].number + 1 if self.outcomes else 0


@dataclass(frozen=True, slots=True)
class Round:
    chunk: Chunk
    number: int
    writer: int  # index into the question writers, 0 = the upstream
    parsed: list[str]  # the new questions, for the judge
    repeats: int  # questions written again word for word: duplicates the judge never sees
    masked: int
    completion: Completion
    temperature: float

    def summary(self, candidates: list[str], duplicates: int) -> RoundSummary:
        """The round as the work log records it: `candidates` still to judge against the store and
        `duplicates` found among the others so far."""
        return RoundSummary(
            number=self.number,
            writer=self.writer,
            temperature=self.temperature,
            parsed=len(self.parsed) + self.repeats,
            duplicates=duplicates + self.repeats,
            repeats=self.repeats,
            masked=self.masked,
            candidates=tuple(candidates),
            tokens=self.completion.tokens,
        )


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """A judged round before the final dedup against the store (Ray workers send it to the driver as JSON)."""

    number: int
    writer: int
    temperature: float
    parsed: int
    duplicates: int
    repeats: int
    masked: int
    candidates: tuple[str, ...]
    tokens: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundSummary:
        return cls(**{**data, "candidates": tuple(data["candidates"])})


# Judge a round given how many questions are still wanted: record it, return (accepted, duplicates), the
# duplicates counting the round's repeats too.
Judge = Callable[[Round, int], tuple[list[str], int]]


def round_seed(chunk_id: str, number: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{chunk_id}:{number}".encode(), digest_size=4).digest(), "big")


def round_plan(number: int, writers: int) -> tuple[int, str, int]:
    """(writer, prompt family, window) of round `number`: the writers take turns, each writer's rounds
    take turns over the families, and a family's window (which passage or sentence) is how many rounds
    of that family the writer had before."""
    writer, turn = number % writers, number // writers
    family = FAMILIES[turn % len(FAMILIES)]
    earlier = turn // len(FAMILIES) * FAMILIES.count(family) + FAMILIES[: turn % len(FAMILIES)].count(family)
    return writer, family, earlier


def family_document(family: str, chunk: str, window: int) -> str:
    """What a round of `family` shows the writer: the chunk, or its `window`-th passage or sentence."""
    if family == "passage":
        return passage(chunk, window)
    return passage(chunk, window, sentences=1) if family == "sentence" else chunk


def questions_wanted(family: str, settings: PrecomputeSettings) -> int:
    return SENTENCE_QUESTIONS if family == "sentence" else settings.questions_per_round


def generate_for_chunk(
    chunk: Chunk,
    progress: ChunkProgress,
    settings: PrecomputeSettings,
    count_tokens: Callable[[str], int],
    chats: Sequence[ChatCall],
    judge: Judge,
    on_garbage: Callable[[UpstreamGarbage], None],
) -> bool:
    """Run the remaining rounds of `chunk`; True when it is finished (enough questions, or every round
    recorded). Each writer is asked its own way (`AdaptiveAsking`: a 135M model writes chatter where a
    0.5B one still writes questions, and copies the mask where another does not), replayed from the
    recorded rounds, so a resumed chunk continues exactly where it stopped."""
    asking = [
        AdaptiveAsking(
            settings.temperature_start,
            settings.temperature_step,
            settings.temperature_cap,
            settings.duplicate_rate_trigger,
            len(FAMILIES),
            sum(questions_wanted(family, settings) for family in FAMILIES) / len(FAMILIES),
        )
        for _ in chats
    ]
    for outcome in progress.outcomes:
        asking[round_plan(outcome.number, len(chats))[0]].observe(*outcome[1:])
    prompt_budget = settings.context_tokens - settings.question_max_tokens
    for number in range(progress.next_round, settings.max_rounds_per_chunk):
        wanted = settings.max_queries_per_chunk - len(progress.asked)
        if wanted <= 0:
            break
        writer, family, window = round_plan(number, len(chats))
        how = asking[writer]
        prompt = question_prompt(
            family_document(family, chunk.text, window),
            questions_wanted(family, settings),
            progress.asked,
            prompt_budget,
            count_tokens,
            with_example=family in ("example", "sentence"),
            mask_limit=how.mask_limit,
        )
        try:
            completion = chats[writer](
                prompt.messages, how.temperature, settings.question_max_tokens, round_seed(chunk.id, number)
            )
        except UpstreamGarbage as exc:
            on_garbage(exc)
            continue
        written = grounded(parse_questions(completion.text, cut=completion.truncated), chunk.text)
        asked = {normalise_text(q) for q in progress.asked}
        parsed = [q for q in written if normalise_text(q) not in asked]
        repeats = len(written) - len(parsed)
        round_ = Round(chunk, number, writer, parsed, repeats, prompt.masked, completion, how.temperature)
        accepted, duplicates = judge(round_, wanted)
        outcome = Outcome(number, len(written), duplicates, repeats, prompt.masked)
        how.observe(*outcome[1:])
        progress.asked.extend(accepted)
        progress.outcomes.append(outcome)
    return (
        len(progress.asked) >= settings.max_queries_per_chunk
        or progress.next_round >= settings.max_rounds_per_chunk
    )
