"""Does a stored answer answer a new question? The answer tier's verifier, for questions that no stored
question matches closely but whose words a stored exchange holds ("who tutored Alexander?" and the entry
"Who did Aristotle tutor?" / "Aristotle tutored Alexander the Great.").

It is lexical and fails closed. Every content word of the new question must be in the stored question or
its answer, at least one of them only in the answer (a new question that the stored question covers
alone is the question guard's to judge, and it already said no). The kind of question must be the same
(the question word's class, "how many" apart from "how"), unless it asks when, how many, who or where
and the answer alone holds every word of it, two at least ("When was Aristotle born?" against "How did
Aristotle view philosophy?" answered "Aristotle (384-322 BC) was a Greek philosopher born in Stagira").
The reverse relation is refused: a name and another word of the question the other way round in the
answer (a passive on one side only turns the order: "Achilles was killed by Paris" answers "who killed
Achilles", not "who did Achilles kill"), or a name that only the answer holds without every other word
of the question in the answer (so that the order can be checked). Negation must agree; the stored
question may not name a number the new one does not; a "when" question needs an answer that holds a
date, a "how many" one a number right before what it counts, a "who" or "where" one a name that the
question does not hold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import simplemma

from precog.gateway.guard.alignment import stem
from precog.gateway.guard.lexicon import FILLERS, NEGATORS, QUESTION_WORDS
from precog.gateway.guard.text import Token, number_word_value, tokenize

_BE = frozenset({"is", "are", "was", "were", "be", "been", "being"})
_AGENT_REACH = 8  # tokens between a passive verb and its "by"
_AMOUNT = frozenset({"many", "much"})
_MEASURE = frozenset({"long", "old", "far", "big", "large", "tall", "high", "often", "deep", "wide", "heavy"})
_TIME_WORDS_TEXT = """
year years century centuries decade decades age ages month months week weeks day days during after before
until since war january february march april may june july august september october november december
spring summer autumn winter
"""
_TIME_WORDS = frozenset(_TIME_WORDS_TEXT.split())
# Question kinds whose answer has a type the check can see (a date or number, a name): a stored question of
# another kind still answers such a question when its answer holds every word of it and that type.
_TYPED = frozenset({"when", "amount", "who", "where"})


@dataclass(frozen=True, slots=True)
class AnswerVerdict:
    accept: bool
    reason: str
    score: float  # the share of the new question's content words found in the stored exchange
    veto: bool = False


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


@functools.lru_cache(maxsize=65536)
def _word_key(word: str) -> str:
    """What two forms of one word share: the stem of its lemma, so "taught" meets "teach", "became"
    "become" and "tutored" "tutor" (simplemma's English dictionary, then the guard's suffix stem)."""
    return stem(simplemma.lemmatize(word, lang="en").casefold())


def _key(token: Token) -> str:
    return _word_key(token.norm) if token.kind == "word" else token.norm


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


def _passives(tokens: list[Token]) -> set[str]:
    """The words used in the passive: after a form of "be" and before a "by" ("he was killed near the end
    of the war by Paris", "who was Achilles killed by")."""
    return {
        _key(token)
        for i, token in enumerate(tokens)
        if any(t.norm in _BE for t in tokens[max(0, i - 2) : i])
        and any(t.norm == "by" for t in tokens[i + 1 : i + 1 + _AGENT_REACH])
    }


def _order_reversed(asked: list[Token], answer: list[Token], names: set[str]) -> tuple[str, str] | None:
    """A name and another word of the question that the answer only holds the other way round ("who
    taught Socrates?" against "Socrates taught Plato."): the answer is about the reverse relation. A word
    passive on one side only turns the order round ("who killed Achilles?" is answered by "Achilles was
    killed by Paris", "who did Achilles kill?" is not)."""
    in_question = list(dict.fromkeys(_key(t) for t in asked if _is_content(t)))
    turned = _passives(asked) ^ _passives(answer)
    where: dict[str, list[int]] = {}
    for i, token in enumerate(answer):
        where.setdefault(_key(token), []).append(i)
    for i, first in enumerate(in_question):
        for second in in_question[i + 1 :]:
            if not (first in names or second in names) or first not in where or second not in where:
                continue
            before, after = (second, first) if {first, second} & turned else (first, second)
            if min(where[before]) > max(where[after]):
                return before, after
    return None


def _numbers(tokens: list[Token]) -> set[str]:
    return {t.norm for t in tokens if t.kind == "number"}


def _is_number(token: Token) -> bool:
    return token.kind == "number" or number_word_value(token.norm) is not None


def _holds_a_number(tokens: list[Token]) -> bool:
    return any(_is_number(t) for t in tokens)


def _counts(asked: list[Token], answer: list[Token]) -> bool:
    """Whether the answer puts a number right before the thing "how many" asks about ("one queen", "3
    moons"): a number elsewhere in it counts something else."""
    after = [i + 1 for i, t in enumerate(asked[:-1]) if t.norm in _AMOUNT]
    things = {_key(asked[i]) for i in after}
    return any(
        _key(token) in things and any(_is_number(t) for t in answer[max(0, i - 3) : i])
        for i, token in enumerate(answer)
    )


def _negated(tokens: list[Token]) -> bool:
    return any(t.norm in NEGATORS for t in tokens)


def uncovered(question: str, stored_query: str, stored_answer: str) -> list[str]:
    """The content words (stems) of `question` that neither the stored question nor its answer holds."""
    exchange = _content(tokenize(stored_query)) | _content(tokenize(stored_answer))
    return sorted(_content(tokenize(question)) - exchange)


def answer_check(question: str, stored_query: str, stored_answer: str) -> AnswerVerdict:
    asked, stored, answer = tokenize(question), tokenize(stored_query), tokenize(stored_answer)
    wanted, in_query, in_answer = _content(asked), _content(stored), _content(answer)
    missing = sorted(wanted - in_query - in_answer)
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
    typed = kind in _TYPED and len(wanted) > 1 and wanted <= in_answer
    if kind != stored_kind and not typed:
        return no(f"asks {kind}, the stored question asks {stored_kind}")
    if _negated(asked) != _negated(stored):
        return no("negation differs")
    names = _names(asked, stored, answer)
    unchecked = sorted(wanted - in_answer) if (wanted - in_query) & names else []
    if unchecked:
        lacking = " ".join(unchecked)
        return no(f"a name comes from the answer, which lacks {lacking}: the relation is unchecked")
    reversed_pair = _order_reversed(asked, answer, names)
    if reversed_pair is not None:
        return no(f"the answer has {reversed_pair[1]} before {reversed_pair[0]}: the reverse relation")
    extra_numbers = _numbers(stored) - _numbers(asked)
    if extra_numbers:
        return no(f"the stored question names {' '.join(sorted(extra_numbers))}")
    if kind == "amount" and not _counts(asked, answer):
        return no("asks how many, the answer puts no number to it")
    if kind == "when" and not (_holds_a_number(answer) or any(t.norm in _TIME_WORDS for t in answer)):
        return no("asks when, the answer holds no date")
    if kind in ("who", "where") and not _names(answer) - _content(asked):
        return no(f"asks {kind}, the answer names no one and nowhere the question does not")
    return AnswerVerdict(True, "the stored answer holds every word of the question", found)
