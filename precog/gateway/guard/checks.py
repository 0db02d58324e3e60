"""Typed checks on two aligned questions: each names one way a near match can ask something else.

A check returns a `Mismatch` (kind and a short human-readable detail) or None. The kinds are the ones the
gateway reports: number, date, unit, negation, direction, entity and question-word mismatches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from precog.gateway.guard.alignment import Alignment
from precog.gateway.guard.lexicon import DETACHED_PREFIXES, DIRECTIONAL, FILLERS, NEGATORS, QUESTION_WORDS
from precog.gateway.guard.quantities import Quantity, quantity_mismatch, written_number_mismatch
from precog.gateway.guard.text import Token

_DATE_DIMENSIONS = frozenset({"date", "month", "clock", "meridiem"})


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str
    detail: str


def quantities_check(left: Sequence[Quantity], right: Sequence[Quantity]) -> Mismatch | None:
    """Different amounts, dates or times; the same number in an incompatible unit is a unit mismatch."""
    for is_date in (True, False):
        chosen_left = [q for q in left if (q.dimension in _DATE_DIMENSIONS) == is_date]
        chosen_right = [q for q in right if (q.dimension in _DATE_DIMENSIONS) == is_date]
        detail = quantity_mismatch(chosen_left, chosen_right)
        if detail is None:
            continue
        if is_date:
            return Mismatch("date", detail)
        same_numbers = {q.written for q in chosen_left} == {q.written for q in chosen_right}
        return Mismatch("unit" if same_numbers else "number", detail)
    detail = written_number_mismatch(left, right)
    if detail is not None:
        return Mismatch("number", detail)
    return _unit_check(left, right)


def _unit_check(left: Sequence[Quantity], right: Sequence[Quantity]) -> Mismatch | None:
    """The same number in units of different kinds ("5 kg" / "5 litres"); a bare count matches any unit."""
    for quantity in left:
        for other in right:
            measured = "count" not in (quantity.dimension.split(":")[0], other.dimension.split(":")[0])
            if measured and quantity.written == other.written and quantity.dimension != other.dimension:
                return Mismatch("unit", f"unit mismatch: {quantity.text} vs {other.text}")
    return None


def negation_check(left: Sequence[Token], right: Sequence[Token], alignment: Alignment) -> Mismatch | None:
    """A negator on one side only ("cancel" / "don't cancel"), or a negating prefix ("safe" / "unsafe")."""
    negators_left = [t.norm for t in left if t.norm in NEGATORS]
    negators_right = [t.norm for t in right if t.norm in NEGATORS]
    if len(negators_left) % 2 != len(negators_right) % 2:
        word = (negators_left or negators_right)[0]
        side = "query" if negators_left else "candidate"
        return Mismatch("negation", f"negation: '{word}' only in the {side}")
    for a, b in alignment.opposites:
        if a.casefold() in b.casefold() or b.casefold() in a.casefold():
            return Mismatch("negation", f"negation: {a} vs {b}")
    for changed, name in ((alignment.left_content, "query"), (alignment.right_content, "candidate")):
        prefix = next((t.norm for t in changed if t.norm in DETACHED_PREFIXES), None)
        if prefix is not None:
            return Mismatch("negation", f"negation: '{prefix}-' only in the {name}")
    return None


def opposites_check(alignment: Alignment) -> Mismatch | None:
    """Polar opposites swapped in ("bigger" / "smaller", "before" / "after", "accept" / "decline")."""
    if alignment.opposites:
        a, b = alignment.opposites[0]
        return Mismatch("direction", f"direction: {a} vs {b}")
    return None


def order_check(left: Sequence[Token], right: Sequence[Token]) -> Mismatch | None:
    """Two words swapped around a directional word ("London to Manchester" / "Manchester to London")."""
    left_words = [t.norm for t in left]
    right_words = [t.norm for t in right]
    shared = [
        w
        for w in dict.fromkeys(left_words)
        if w in right_words and w not in FILLERS and left_words.count(w) == 1 and right_words.count(w) == 1
    ]
    for i, first in enumerate(shared):
        for second in shared[i + 1 :]:
            a1, a2 = left_words.index(first), left_words.index(second)
            b1, b2 = right_words.index(first), right_words.index(second)
            if (a1 < a2) == (b1 < b2):
                continue
            between_left = set(left_words[min(a1, a2) + 1 : max(a1, a2)])
            between_right = set(right_words[min(b1, b2) + 1 : max(b1, b2)])
            if between_left & between_right & DIRECTIONAL:
                return Mismatch("direction", f"direction: order of '{first}' and '{second}' reversed")
    return None


def is_entity(token: Token) -> bool:
    """A name by its spelling: capitalised mid-sentence, an acronym, or mixed case ("PayPal", "iPhone")."""
    surface = token.surface
    if token.kind != "word" or len(surface) < 2 or not any(c.isupper() for c in surface):
        return False
    if surface.isupper() and surface.casefold() not in FILLERS:
        return True
    if any(c.isupper() for c in surface[1:]):
        return True
    return not token.sentence_start and surface.casefold() not in FILLERS


def entity_check(alignment: Alignment) -> Mismatch | None:
    """A name replaced by another name ("Jira" / "Trello") or by one or two other words."""
    left = [t for t in alignment.left_content if is_entity(t)]
    right = [t for t in alignment.right_content if is_entity(t)]
    if left and right:
        return Mismatch(
            "entity",
            f"entity mismatch: {' '.join(t.surface for t in left)} vs {' '.join(t.surface for t in right)}",
        )
    if left or right:
        names = left or right
        others = alignment.right_content if left else alignment.left_content
        if 0 < len(others) <= 2 and len(names) <= 2:
            return Mismatch(
                "entity",
                f"entity mismatch: {' '.join(t.surface for t in names)} vs "
                f"{' '.join(t.surface for t in others)}",
            )
    return None


def question_word_check(alignment: Alignment) -> Mismatch | None:
    """The question word alone swapped for one of another class ("when did X leave" / "how did X leave"):
    the rest is the same, so the two ask for different things about it. A wider change ("what year was X
    born" / "when was X born") is left to the classifier, since it is often a paraphrase."""
    for edit in alignment.edits:
        if len(edit.left) == len(edit.right) == 1:
            (a,), (b,) = edit.left, edit.right
            left, right = QUESTION_WORDS.get(a.norm), QUESTION_WORDS.get(b.norm)
            if left and right and left != right:
                return Mismatch("question", f"question word: {a.surface} vs {b.surface}")
    return None


def question_word_change(alignment: Alignment) -> bool:
    """The question word itself changed class ("when" / "where") in a span that was otherwise the same."""
    for edit in alignment.edits:
        left = {QUESTION_WORDS[t.norm] for t in edit.left if t.norm in QUESTION_WORDS}
        right = {QUESTION_WORDS[t.norm] for t in edit.right if t.norm in QUESTION_WORDS}
        if left and right and left != right:
            return True
    return False
