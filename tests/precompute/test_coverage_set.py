"""The hand-written coverage set in bench/coverage_set: its size, its halves, and that every answerable
question's keywords can be found in the sample article it is about."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

from precog.precompute import write_sample

ROOT = Path(__file__).resolve().parents[2]


def _coverage():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("coverage_set", ROOT / "bench/coverage_set/__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_set"] = module
    spec.loader.exec_module(module)
    return module


def test_the_set_is_large_enough_and_half_blind() -> None:
    coverage = _coverage()
    questions = coverage.load()
    kinds = Counter(q.kind for q in questions)
    assert kinds["answerable"] >= 150
    assert kinds["off-corpus"] + kinds["near-topic"] >= 50
    assert len({q.id for q in questions}) == len(questions)
    assert len({q.question.lower() for q in questions}) == len(questions)
    blind = coverage.load("blind")
    assert abs(len(blind) - len(questions) / 2) <= 6
    assert {q.kind for q in blind} == {"answerable", "off-corpus", "near-topic"}


def test_every_answerable_question_has_a_keyword_in_its_article(tmp_path: Path) -> None:
    coverage = _coverage()
    write_sample(tmp_path, articles=coverage.ARTICLES, chars=coverage.CHARS)
    texts = {path.name: path.read_text() for path in tmp_path.iterdir()}
    answerable = [q for q in coverage.load() if q.answerable]
    assert {q.article for q in answerable} == set(texts)
    missing = [q.id for q in answerable if not q.answered_by(texts[q.article])]
    assert missing == []


def test_keywords_match_whole_words_in_any_case() -> None:
    coverage = _coverage()
    question = coverage.CoverageQuestion("x", "answerable", "who?", "tune", "a.txt", ("Paris", "1"))
    assert question.answered_by("He was shot by paris.")
    assert question.answered_by("a value of 1 for white")
    assert not question.answered_by("Parisian horns, 100 of them")
    assert not coverage.CoverageQuestion("y", "off-corpus", "?", "tune").answered_by("anything")
