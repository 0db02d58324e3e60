"""Question generation prompts (with adaptive query masking), output parsing and adaptive temperature.

StorInfer's generator: the questions already asked about a chunk go into the prompt (before the chunk, see
`question_prompt`), newest first, as many as fit the context left after the instructions, the chunk and the
answer room; the sampling temperature starts at 0.7 and rises by `step` (default 0.15, capped at 1.3) when
at least `trigger` (default half) of the questions a writer wrote over its last turn of the prompt families
were duplicates, and resets for every chunk (`AdaptiveAsking`, which also shrinks the mask of a writer that
copies it).

Three prompt families take turns by round, because the store's hit rate is bounded by how many of the
questions users ask it holds, and one prompt runs dry: the plain instruction, the same instruction after one
worked example, and the instruction over one passage of the chunk (`passage`: two sentences after the
lead, the next two each time), which makes a small model ask about what it skips in the whole chunk. On
four gensim Wikipedia chunks with SmolLM2-135M (four seeds each), the plain prompt gave 29 usable questions
and the worked example 42, and held-out questions found a stored same question at the gateway's floor 3 of
17 times with either family alone and 4 of 17 with both. With 24 rounds a chunk, the passage family in the
turn raised the store from 50 to 72 questions and its hits on 58 held-out questions written by
Qwen2.5-Coder-0.5B from 5 to 6; the stores of three generators together (239 questions) hit 11. Questions
about nothing in the chunk are dropped (`grounded`). A fourth family, every other round (see
`precog.precompute.generate.FAMILIES`), shows one sentence after the lead and asks for three questions:
a 900-character chunk has eight or so sentences and the other families only a few windows, and a
question asked of one sentence is one that sentence answers, which the answer stage quotes when the
model's own answer is not grounded (`precog.precompute.answer.supporting_passage`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from precog.store import normalise_text

GENERATOR_SYSTEM = (
    "You write the questions that users of a chat app ask about a document. Reply with questions only."
)
# The worked example of the second family: shown one exchange, a small model writes a list of plain
# questions that name their subject, where the bare instruction often gets chatter.
EXAMPLE_DOCUMENT = (
    "Honey bee\n\nThe honey bee is a eusocial flying insect known for building colonies, producing honey and "
    "pollinating crops. A colony has one queen, thousands of female workers and a few hundred male drones. "
    "Workers live about six weeks in summer."
)
EXAMPLE_QUESTIONS = (
    "What is a honey bee?",
    "What do honey bees produce?",
    "How many queens does a honey bee colony have?",
    "How long do worker bees live?",
    "What are drones?",
)

_PREFIX = re.compile(r"^\s*(?:[-*•>]+|\(?\d{1,3}\s*[.):\]]|q(?:uestion)?\s*\d*\s*[:.)-])\s*", re.IGNORECASE)
_MARKUP = re.compile(r"[*_`#]+")
_QUESTION_WORDS = (
    r"(what|who|whom|whose|when|where|why|which|how|is|are|was|were|do|does|did|can|could|should|"
    r"would|will|has|have|had)\b"
)
_INTERROGATIVE = re.compile("^" + _QUESTION_WORDS, re.IGNORECASE)
# A question quoted inside chatter (`A user might ask "What is albedo?`): the question starts at the quote.
_QUOTED_QUESTION = re.compile(r"[\"“]\s*(?=" + _QUESTION_WORDS + ")", re.IGNORECASE)
_META = re.compile(r"^(here (are|is)|sure|certainly|okay|ok|note|questions?:)", re.IGNORECASE)
# Questions a small model asks its user instead of writing one ("What would you like me to create?").
# ... or that echo the instruction ("Can you write 5 questions that ...?").
_ASSISTANT = re.compile(
    r"\b(you like me|would you like|can i help|help you|shall i|me to)\b"
    r"|\b(write|ask|generate)\b.*\bquestions?\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!:;])\s+")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")  # between sentences, and between lines
PASSAGE_SENTENCES = 2
MIN_WORDS, MAX_WORDS = 3, 40
_WORD = re.compile(r"[a-z0-9]+")
_FUNCTION_WORDS_TEXT = (
    "what who whom whose when where why which how is are was were do does did can could should would will "
    "has have had the a an of in on at to for from by with and or not no nor this that these those it its "
    "they them their there here be been being about into as than then so if but any some many much more "
    "most other such own same very just also only all each both few one ones you your we our i me my he "
    "his she her us get make use used mean means called kind type way different difference between exactly "
    "main"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
STEM_LETTERS = 5


class QuestionPrompt(NamedTuple):
    messages: list[dict[str, str]]
    masked: int  # how many asked questions it shows


def question_prompt(
    chunk: str,
    wanted: int,
    asked: Sequence[str],
    budget_tokens: int,
    count: Callable[[str], int],
    with_example: bool = False,
    mask_limit: int | None = None,
) -> QuestionPrompt:
    """Chat messages asking for `wanted` new questions, after the worked example when `with_example`.

    `asked` (oldest first) is masked newest first, as many as fit `budget_tokens` (and `mask_limit`), before
    the document and the instruction: listed after them, right where the reply starts, it was copied even
    more (Qwen2.5-Coder-0.5B: 11 new questions in 12 rounds against 22; SmolLM2-135M: 3 against 13)."""
    example = (
        [
            {"role": "user", "content": _request(EXAMPLE_DOCUMENT, len(EXAMPLE_QUESTIONS))},
            {"role": "assistant", "content": "\n".join(EXAMPLE_QUESTIONS)},
        ]
        if with_example
        else []
    )
    request = _request(chunk, wanted)
    used = count(GENERATOR_SYSTEM) + sum(count(m["content"]) for m in example) + count(request) + 24
    masked: list[str] = []
    recent = asked if mask_limit is None else asked[max(0, len(asked) - mask_limit) :]
    for question in reversed(recent):
        cost = count(question) + 2
        if used + cost > budget_tokens:
            break
        masked.append(question)
        used += cost
    listed = "".join(f"- {q}\n" for q in masked)
    user = (
        f"These questions were already asked; do not repeat them:\n{listed}\n{request}" if masked else request
    )
    messages = [{"role": "system", "content": GENERATOR_SYSTEM}, *example, {"role": "user", "content": user}]
    return QuestionPrompt(messages, len(masked))


def passage(document: str, index: int, sentences: int = PASSAGE_SENTENCES) -> str:
    """The `index`-th window of `sentences` sentences of `document` (cycling), after its lead (first line or
    sentence, often the title), so that the window's "it" still names something."""
    lead, *rest = [part for part in SENTENCE_BREAK.split(document.strip()) if part.strip()] or [""]
    windows = [" ".join(rest[i : i + sentences]) for i in range(0, len(rest), sentences)]
    return f"{lead}\n\n{windows[index % len(windows)]}" if windows else document


def _request(document: str, wanted: int) -> str:
    return (
        f"Document:\n{document}\n\nWrite {wanted} different questions that a user might ask and that this "
        "document answers, one question per line."
    )


def _from_quote(part: str) -> str:
    """The question quoted in chatter; a question that quotes one of its own is left whole."""
    quotes = [] if _INTERROGATIVE.match(part.lstrip('"“ ')) else list(_QUOTED_QUESTION.finditer(part))
    return part[quotes[-1].end() :] if quotes else part


def _candidates(line: str) -> list[str]:
    line = _MARKUP.sub("", _PREFIX.sub("", line)).strip().strip("\"'“”‘’").strip()
    if not line or _META.match(line):
        return []
    if "?" in line:
        parts = [_from_quote(_SENTENCE_END.split(p.strip())[-1]) for p in line.split("?")[:-1]]
        return [_PREFIX.sub("", p).strip("\"'“”‘’ ") + "?" for p in parts if p.strip()]
    return [line.rstrip(".:;!") + "?"] if _INTERROGATIVE.match(line) else []


def parse_questions(text: str, exclude: Sequence[str] = (), cut: bool = False) -> list[str]:
    """Questions in a small model's free-form output: numbered, bulleted, quoted or run together on one
    line, or after a sentence of chatter. Keeps 3-40 word questions; drops meta lines ("Here are..."),
    questions to the user ("What would you like me to write?"), repeats and anything in `exclude`.
    `cut`: the output stopped at max_tokens, so its last line is a question cut short ("What role does
    anarchism play in the") and is dropped, where it would otherwise be stored with a "?" added."""
    seen = {normalise_text(q) for q in exclude}
    found: list[str] = []
    lines = text.splitlines()
    for line in lines[:-1] if cut else lines:
        for question in _candidates(line):
            words = len(question.split())
            key = normalise_text(question)
            if MIN_WORDS <= words <= MAX_WORDS and key not in seen and not _ASSISTANT.search(question):
                seen.add(key)
                found.append(question)
    return found


def content_stems(text: str) -> list[str]:
    """The content words of `text` (no function words, 3 letters or more), each cut to a 5-letter prefix
    that stands in for a stem, so "tutored" and "tutor" or "borders" and "bordered" agree."""
    words = _WORD.findall(text.lower())
    return [w[:STEM_LETTERS] for w in words if w not in _FUNCTION_WORDS and (len(w) > 2 or w.isdigit())]


def grounded(questions: Sequence[str], document: str) -> list[str]:
    """The questions with at least a third of their content words, and one at least, in `document`. A
    small generator also asks about nothing in the text ("What is the capital of France?", "What is a
    pen?"); stored, such a question would be answered from a chunk that does not hold its answer."""
    in_document = set(content_stems(document))
    kept = []
    for question in questions:
        content = content_stems(question)
        found = sum(stem in in_document for stem in content)
        if found and 3 * found >= len(content):
            kept.append(question)
    return kept


class AdaptiveAsking:
    """How one question writer is asked about one chunk, adapted after each turn of the prompt families
    (`window` rounds) from what it wrote in that turn, so that a writer is judged on a dozen questions or
    more (judged on one round, a single duplicate of two parsed questions raised the temperature, and a 135M
    writer reached the cap within a few rounds).

    Temperature (StorInfer): raised by `step` (up to `cap`) when at least `trigger` of the questions were
    duplicates, word-for-word repeats included; lowered by `step` (not below `start`) when it wrote fewer
    than half of the questions asked for, because past some temperature a small model writes chatter
    instead (SmolLM2-135M at 1.3: 9 usable questions in 15 rounds).

    Mask: how many already-asked questions the prompt shows. All that fit, until a turn in which at least
    `COPYING` of what the writer wrote were copies of asked questions; then half as many as the turn's last
    round showed, again after each such turn. The mask is there to steer a writer away from what was
    asked, and a model that follows "do not repeat them" keeps it whole; small models copy the list
    instead: on four chunks with 20 rounds of questions asked, Qwen2.5-Coder-0.5B wrote 34 questions, 12 of
    them copies and 8 more within 0.9 cosine of one, where without the list it wrote 31, none of either.
    """

    COPYING = 0.25

    def __init__(
        self, start: float, step: float, cap: float, trigger: float, window: int, asked_per_round: float
    ) -> None:
        self.temperature = start
        self.mask_limit: int | None = None  # None: as many as fit
        self._start, self._step, self._cap, self._trigger = start, step, cap, trigger
        self._window, self._asked_per_round = window, asked_per_round
        self._turn: list[tuple[int, int, int, int]] = []

    def observe(self, written: int, duplicates: int, repeats: int, masked: int) -> None:
        """One round: `written` usable questions, `duplicates` of them (`repeats` word for word), after a
        prompt that showed `masked` asked questions."""
        self._turn.append((written, duplicates, repeats, masked))
        if len(self._turn) < self._window:
            return
        written, duplicates, repeats = (sum(round_[i] for round_ in self._turn) for i in range(3))
        shown = self._turn[-1][3]  # the most, as the asked questions only grow
        self._turn.clear()
        if written and repeats >= self.COPYING * written:
            self.mask_limit = shown // 2
        if 2 * written < self._window * self._asked_per_round:
            self.temperature = max(self._start, round(self.temperature - self._step, 4))
        elif duplicates >= self._trigger * written:
            self.temperature = min(self._cap, round(self.temperature + self._step, 4))
