"""The guard's typed checks and decision stages on hand-written pairs (no data set, no sentence model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from precog.gateway.guard import Guard, GuardVerdict
from precog.gateway.guard.checks import question_word_check
from precog.gateway.guard.classifier import PairClassifier, Tree
from precog.gateway.guard.comparison import compare
from precog.gateway.guard.features import FEATURE_NAMES
from precog.gateway.guard.quantities import extract_quantities
from precog.gateway.guard.text import tokenize


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard()


def kinds(query: str, candidate: str) -> list[str]:
    return [m.kind for m in compare(query, candidate).mismatches]


@pytest.mark.parametrize(
    ("query", "candidate", "expected"),
    [
        ("How many calories are in 2 eggs?", "How many calories are in 3 eggs?", "2 vs 3"),
        ("What is 2+2?", "What is 2+3?", "2, 2 vs 2, 3"),
        ("How many calories are in one egg?", "How many calories are in three eggs?", "one vs three"),
        ("Can I cancel within 14 days?", "Can I cancel within 30 days?", "14 days vs 30 days"),
        ("Is a £300,000 flat liable?", "Is a £550,000 flat liable?", "£300,000 vs £550,000"),
        ("What's the fee for a 23kg bag?", "What's the fee for a 32kg bag?", "23kg vs 32kg"),
        ("How much is pay for the first 6 weeks?", "How much is pay for weeks 10 to 39?", "6"),
    ],
)
def test_different_numbers_are_a_number_mismatch(query: str, candidate: str, expected: str) -> None:
    mismatches = compare(query, candidate).mismatches
    assert mismatches and mismatches[0].kind == "number"
    assert expected in mismatches[0].detail


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("Is my flight delayed by four hours?", "Is my flight delayed by 4 hrs?"),
        ("Can I park for 2 hours?", "Can I park for 120 minutes?"),
        ("Is a 23kg bag allowed?", "Is a 23 kg bag allowed?"),
        ("Can I spend £25 here?", "Can I spend twenty five pounds here?"),
        ("Book a table at 7pm", "Book a table at 7:00 pm"),
        ("Remind me at 7am", "Remind me at seven"),
    ],
)
def test_the_same_amount_written_differently_is_no_mismatch(query: str, candidate: str) -> None:
    assert kinds(query, candidate) == []


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("Is the pharmacy open on Monday?", "Is the pharmacy open on Tuesday?"),
        ("Is the 9:15 train on time?", "Is the 9:45 train on time?"),
        ("How much is a call-out at 2am?", "How much is a call-out at 2pm?"),
        ("Can I book for 3 May?", "Can I book for 3 June?"),
        ("Is the shop open today?", "Is the shop open tomorrow?"),
    ],
)
def test_different_dates_and_times_are_a_date_mismatch(query: str, candidate: str) -> None:
    assert kinds(query, candidate)[:1] == ["date"]


def test_may_is_a_month_only_next_to_a_number() -> None:
    assert [q.dimension for q in extract_quantities(tokenize("May I book for 3 May?"))] == ["count", "month"]


def test_the_same_number_in_another_unit_is_a_unit_mismatch() -> None:
    miles = compare("Is it 5 miles to the station?", "Is it 5 km to the station?").mismatches
    assert [(m.kind, m.detail) for m in miles] == [("unit", "length mismatch: 5 miles vs 5 km")]
    litres = compare("Can I take 5 kg on board?", "Can I take 5 litres on board?").mismatches
    assert [(m.kind, m.detail) for m in litres] == [("unit", "unit mismatch: 5 kg vs 5 litres")]


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("Don't cancel my subscription", "Cancel my subscription"),
        ("Which items can't be recycled?", "Which items can be recycled?"),
        ("Is ibuprofen unsafe with alcohol?", "Is ibuprofen safe with alcohol?"),
        ("Is the deposit non-refundable?", "Is the deposit refundable?"),
        ("How do I unarchive a project?", "How do I archive a project?"),
        ("Can I travel without a visa?", "Can I travel with a visa?"),
    ],
)
def test_negation_on_one_side_only_is_a_negation_mismatch(query: str, candidate: str) -> None:
    assert kinds(query, candidate)[:1] == ["negation"]


def test_contractions_and_spelled_negations_agree() -> None:
    assert kinds("Why can't I log in?", "Why cannot I log in?") == []
    assert kinds("I won't be home", "I will not be home") == []


@pytest.mark.parametrize(
    ("query", "candidate", "words"),
    [
        ("Which plan is bigger?", "Which plan is smaller?", ("bigger", "smaller")),
        ("Should I eat before surgery?", "Should I eat after surgery?", ("before", "after")),
        ("How do I accept an offer?", "How do I reject an offer?", ("accept", "reject")),
        ("Which bands have increased?", "Which bands have decreased?", ("increased", "decreased")),
        ("How do I upload a file?", "How do I download a file?", ("upload", "download")),
    ],
)
def test_polar_opposites_are_a_direction_mismatch(query: str, candidate: str, words: tuple[str, str]) -> None:
    mismatch = compare(query, candidate).mismatches[0]
    assert mismatch.kind == "direction"
    assert all(word in mismatch.detail for word in words)


def test_words_swapped_around_a_directional_word_reverse_the_question() -> None:
    mismatch = compare("How much is a ticket from Leeds to York?", "How much is a ticket from York to Leeds?")
    assert [m.kind for m in mismatch.mismatches] == ["direction"]
    assert kinds("How do I convert a Word file to PDF?", "How do I convert a PDF to a Word file?") == [
        "direction"
    ]


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How do I set up the Trello integration?", "How do I set up the Jira integration?"),
        ("What's the number for HSBC's fraud team?", "What's the number for Lloyds' fraud team?"),
        ("Do I need a visa to fly to China?", "Do I need a visa to fly to Canada?"),
        ("What's Mark's phone number?", "What's Mary's phone number?"),
    ],
)
def test_one_name_replaced_by_another_is_an_entity_mismatch(query: str, candidate: str) -> None:
    assert kinds(query, candidate)[:1] == ["entity"]


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("What is the bagage allowence for economy?", "What is the baggage allowance for economy?"),
        ("How do I get to Manchster Piccadilly?", "How do I get to Manchester Piccadilly?"),
        ("Hi team, how do I change my invoice currency? Thanks!", "How do I change my invoice currency?"),
        (
            "For my subscription, how do I turn off auto-renewal?",
            "How do I turn off auto-renewal for my subscription?",
        ),
        ("What does the refunds process involve?", "What does the refund process involve?"),
        ("Is there an instore pickup?", "Is there an in store pickup?"),
    ],
)
def test_typos_fillers_word_forms_and_moves_leave_no_changed_content(query: str, candidate: str) -> None:
    comparison = compare(query, candidate)
    assert comparison.mismatches == ()
    assert comparison.alignment.left_content == [] and comparison.alignment.right_content == []


def test_a_replaced_content_word_is_reported_as_changed(guard: Guard) -> None:
    verdict = guard.check("Can I bring hand luggage for free?", "Can I bring checked luggage for free?", 0.9)
    assert not verdict.accept
    assert verdict.reason.startswith("content changed: hand vs checked")


def test_verdicts_name_the_mismatch_and_accept_identical_questions(guard: Guard) -> None:
    assert guard.check("How many calories in 3 eggs?", "How many calories in 5 eggs?", 0.97) == GuardVerdict(
        False, "count mismatch: 3 vs 5", 0.0, veto=True
    )
    same = guard.check("  how do I reset my PASSWORD ", "How do I reset my password?", 0.99)
    assert same.accept and same.score == 1.0
    low = guard.check("How do I reset my password?", "What is the capital of France?", 0.1)
    assert not low.accept and low.reason.startswith("low similarity")


def test_check_many_agrees_with_check(guard: Guard) -> None:
    triples = [
        ("How do I reset my password?", "How can I reset my password?", 0.98),
        ("How do I apply for a student loan? Thanks", "How do I apply for a student loan?", 0.95),
        ("Is the clinic open on Sundays?", "Is the clinic closed on Sundays?", 0.93),
        ("Where is the nearest store?", "What is the capital of Peru?", 0.2),
    ]
    assert guard.check_many(triples) == [guard.check(*t) for t in triples]
    assert guard.check_many([]) == []


def test_near_repeats_are_accepted(guard: Guard) -> None:
    assert guard.check("how do i fix a dripping tap", "How do I fix a dripping tap?", 0.98).accept
    assert guard.check(
        "How can I cancel my mobile contract?", "How do I cancel my mobile contract?", 0.99
    ).accept


@pytest.mark.parametrize(
    ("triple", "error"),
    [
        ((None, "a", 0.9), TypeError),
        (("a", 3, 0.9), TypeError),
        (("a", "b", "0.9"), TypeError),
        (("a", "b", True), TypeError),
        (("a", "b", float("nan")), ValueError),
        (("a", "b", 1.5), ValueError),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(guard: Guard, triple: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        guard.check(*triple)


def test_bad_settings_are_refused(guard: Guard) -> None:
    with pytest.raises(ValueError, match="threshold"):
        Guard(guard.classifier, guard.vectors, threshold=1.5)
    with pytest.raises(ValueError, match="min_similarity"):
        Guard(guard.classifier, guard.vectors, min_similarity=2.0)


def test_a_stricter_threshold_accepts_a_subset(guard: Guard) -> None:
    triples = [
        (
            "How can I obtain a copy of my tenancy agreement?",
            "How do I get a copy of my tenancy agreement?",
            0.99,
        ),
        ("When does the autumn term begin?", "When does the autumn term start?", 0.99),
        ("How do I apply for a student loan? Thanks", "How do I apply for a student loan?", 0.95),
    ]
    strict = Guard(guard.classifier, guard.vectors, threshold=0.999)
    loose = [v.accept for v in guard.check_many(triples)]
    tight = [v.accept for v in strict.check_many(triples)]
    assert all(a or not b for a, b in zip(loose, tight, strict=True))


def test_shipped_weights_round_trip_and_wrong_weights_are_refused(guard: Guard, tmp_path: Path) -> None:
    path = tmp_path / "weights.json"
    guard.classifier.save(path)
    assert PairClassifier.load(path, FEATURE_NAMES) == guard.classifier
    raw = json.loads(path.read_text())
    raw["feature_names"] = raw["feature_names"][:-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError):
        PairClassifier.load(path, FEATURE_NAMES)
    with pytest.raises(ValueError, match="disagree"):
        Tree((0, -1), (0.5,), (1, -1), (2, -1), (0.1, 0.9))
    with pytest.raises(ValueError, match="features"):
        guard.classifier.probabilities(np.zeros((1, 3)))


def test_a_question_word_swapped_alone_for_another_class_is_vetoed(guard: Guard) -> None:
    verdict = guard.check("when did Aristotle leave Athens", "How did Aristotle leave Athens?", 0.89)
    assert not verdict.accept and "question word: when vs How" in verdict.reason
    same_class = compare("which state borders Alabama", "what state borders Alabama")
    assert question_word_check(same_class.alignment) is None
    wider = compare("what year was Lincoln born", "when was Lincoln born")
    assert question_word_check(wider.alignment) is None


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How do I buy a ticket?", "How do I purchase a ticket?"),
        ("Can I repair my bike here?", "Can I fix my bike here?"),
        ("Is the hotel cheap?", "Is the hotel inexpensive?"),
    ],
)
def test_wordnet_synonyms_are_weighed_not_counted_as_changed_content(
    query: str, candidate: str, guard: Guard
) -> None:
    comparison = compare(query, candidate)
    assert comparison.alignment.synonyms == 1
    assert comparison.alignment.left_content == [] and comparison.alignment.right_content == []
    assert comparison.mismatches == ()
    assert not guard.near_repeat(query, candidate)  # a swap of senses is the classifier's call, not a repeat
