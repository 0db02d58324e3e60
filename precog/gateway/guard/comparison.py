"""Everything the guard knows about a query and a candidate before it decides: alignment and typed checks."""

from __future__ import annotations

from dataclasses import dataclass

from precog.gateway.guard.alignment import Alignment, align
from precog.gateway.guard.checks import (
    Mismatch,
    entity_check,
    is_entity,
    negation_check,
    opposites_check,
    order_check,
    quantities_check,
    question_word_change,
)
from precog.gateway.guard.quantities import extract_quantities, unpaired_dimensions
from precog.gateway.guard.text import tokenize


@dataclass(frozen=True, slots=True)
class Comparison:
    """The aligned differences of two questions and the typed mismatches found in them (first one wins)."""

    alignment: Alignment
    mismatches: tuple[Mismatch, ...]
    left_length: int
    right_length: int
    question_word_changed: bool
    unpaired_quantities: int
    entities_one_side: int


def compare(query: str, candidate: str) -> Comparison:
    """Tokenise, align and run every typed check on `query` against `candidate`."""
    left, right = tokenize(query), tokenize(candidate)
    alignment = align(left, right)
    left_quantities, right_quantities = extract_quantities(left), extract_quantities(right)
    found = (
        quantities_check(left_quantities, right_quantities),
        negation_check(left, right, alignment),
        opposites_check(alignment),
        order_check(left, right),
        entity_check(alignment),
    )
    entities_left = sum(is_entity(t) for t in alignment.left_content)
    entities_right = sum(is_entity(t) for t in alignment.right_content)
    return Comparison(
        alignment=alignment,
        mismatches=tuple(m for m in found if m is not None),
        left_length=len(left),
        right_length=len(right),
        question_word_changed=question_word_change(alignment),
        unpaired_quantities=len(unpaired_dimensions(left_quantities, right_quantities)),
        entities_one_side=abs(entities_left - entities_right),
    )
