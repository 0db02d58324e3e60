"""Does a stored answer answer a new question? The answer tier's verifier, for questions that no stored
question matches closely but whose words a stored exchange holds ("who tutored Alexander?" and the entry
"Who did Aristotle tutor?" / "Aristotle tutored Alexander the Great.").

It is lexical and fails closed. Every content word of the new question must be in the stored question or
its answer, at least one of them only in the answer (a new question that the stored question covers
alone is the question guard's to judge, and it already said no). The kind of question must be the same
(the question word's class, "how many" apart from "how"). A name and another word of the question may
not stand the other way round in the answer (the reverse relation), and a name that only the answer
holds needs every other word of the question in the answer too, so that the order can be checked.
Negation must agree, the stored question may not name a number the new one does not, and a "when" or
"how many" question needs an answer that holds a date or a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from precog.gateway.guard.alignment import stem
from precog.gateway.guard.lexicon import FILLERS, NEGATORS, QUESTION_WORDS
from precog.gateway.guard.text import Token, number_word_value, tokenize

_AMOUNT = frozenset({"many", "much"})
_MEASURE = frozenset({"long", "old", "far", "big", "large", "tall", "high", "often", "deep", "wide", "heavy"})
_TIME_WORDS_TEXT = """
year years century centuries decade decades age ages month months week weeks day days during after before
until since war january february march april may june july august september october november december
spring summer autumn winter
"""
_TIME_WORDS = frozenset(_TIME_WORDS_TEXT.split())


@dataclass(frozen=True, slots=True)
class AnswerVerdict:
    accept: bool
    reason: str
    score: float  # the share of the new question's content words found in the stored exchange


def question_kind(tokens: list[Token]) -> str:
    """The class of the first question word ("how many" is "amount", "how long" "measure"); "yes/no" for
    a question without one ("is albedo dimensionless")."""
    for i, token in enumerate(tokens):
        kind = QUESTION_WORDS.get(token.norm)
        if kind is None:
            continue
        following = tokens[i + 1].norm if i + 1 < len(tokens) else ""
        if kind == "how" and following in _AMOUNT:
            return "amount"
        if kind == "how" and following in _MEASURE:
            return "measure"
        return kind
    return "yes/no"


def _key(token: Token) -> str:
    return stem(token.norm) if token.kind == "word" else token.norm


def _is_content(token: Token) -> bool:
    return (
        token.kind in ("word", "number")
        and token.norm not in FILLERS
        and token.norm not in NEGATORS
        and len(token.norm) > 1
    )


def _content(tokens: list[Token]) -> set[str]:
    return {_key(token) for token in tokens if _is_content(token)}


def _names(*texts: list[Token]) -> set[str]:
    """Words written capitalised inside a sentence in any of `texts`: the names a relation is about."""
    return {_key(t) for tokens in texts for t in tokens if t.surface[:1].isupper() and not t.sentence_start}


def _order_reversed(asked: list[Token], answer: list[Token], names: set[str]) -> tuple[str, str] | None:
    """A name and another word of the question that the answer only holds the other way round ("who
    taught Socrates?" against "Socrates taught Plato."): the answer is about the reverse relation."""
    in_question = list(dict.fromkeys(_key(t) for t in asked if _is_content(t)))
    where: dict[str, list[int]] = {}
    for i, token in enumerate(answer):
        where.setdefault(_key(token), []).append(i)
    for i, first in enumerate(in_question):
        for second in in_question[i + 1 :]:
            named = first in names or second in names
            if named and first in where and second in where and min(where[first]) > max(where[second]):
                return first, second
    return None


def _numbers(tokens: list[Token]) -> set[str]:
    return {t.norm for t in tokens if t.kind == "number"}


def _holds_a_number(tokens: list[Token]) -> bool:
    return any(t.kind == "number" or number_word_value(t.norm) is not None for t in tokens)


def _negated(tokens: list[Token]) -> bool:
    return any(t.norm in NEGATORS for t in tokens)


def uncovered(question: str, stored_query: str, stored_answer: str) -> list[str]:
    """The content words (stems) of `question` that neither the stored question nor its answer holds."""
    exchange = _content(tokenize(stored_query)) | _content(tokenize(stored_answer))
    return sorted(_content(tokenize(question)) - exchange)


def answer_check(question: str, stored_query: str, stored_answer: str) -> AnswerVerdict:
    asked, stored, answer = tokenize(question), tokenize(stored_query), tokenize(stored_answer)
    wanted = _content(asked)
    in_query = _content(stored)
    missing = uncovered(question, stored_query, stored_answer)
    found = 1 - len(missing) / len(wanted) if wanted else 0.0

    def no(reason: str) -> AnswerVerdict:
        return AnswerVerdict(False, reason, found)

    if not wanted:
        return no("the question has no content words")
    if missing:
        return no(f"the stored exchange lacks: {' '.join(missing)}")
    if wanted <= in_query:
        return no("the stored question covers the question: the question guard's call")
    kind, stored_kind = question_kind(asked), question_kind(stored)
    if kind != stored_kind:
        return no(f"asks {kind}, the stored question asks {stored_kind}")
    if _negated(asked) != _negated(stored):
        return no("negation differs")
    names = _names(asked, stored, answer)
    unchecked = sorted(wanted - _content(answer)) if (wanted - in_query) & names else []
    if unchecked:
        lacking = " ".join(unchecked)
        return no(f"a name comes from the answer, which lacks {lacking}: the relation is unchecked")
    reversed_pair = _order_reversed(asked, answer, names)
    if reversed_pair is not None:
        return no(f"the answer has {reversed_pair[1]} before {reversed_pair[0]}: the reverse relation")
    extra_numbers = _numbers(stored) - _numbers(asked)
    if extra_numbers:
        return no(f"the stored question names {' '.join(sorted(extra_numbers))}")
    if kind == "amount" and not _holds_a_number(answer):
        return no("asks how many, the answer holds no number")
    if kind == "when" and not (_holds_a_number(answer) or any(t.norm in _TIME_WORDS for t in answer)):
        return no("asks when, the answer holds no date")
    return AnswerVerdict(True, "the stored answer holds every word of the question", found)
