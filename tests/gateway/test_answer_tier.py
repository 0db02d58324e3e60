"""The answer tier: an entry whose stored answer answers a new question is served when no stored question
matches it, and only then (the lexical answer check on hand-written cases, then real HTTP)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from precog.gateway.guard import answer_check
from precog.store import Embedder, Entry, Store, scope_key
from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState, answer_for
from tests.gateway.support import chat

QUEENS = ("How is a honey bee colony organised?", "A colony has one queen, thousands of workers and drones.")
WORKERS = ("How many workers does a colony have?", "A colony has thousands of workers and a few drones.")
TEACHER = ("Who did Socrates teach?", "Socrates taught Plato, who later founded the Academy.")
MARS = ("What is Olympus Mons?", "Olympus Mons is a volcano on Mars, the tallest in the Solar System.")
MENTOR = ("Who did Socrates mentor?", "Plato, later the founder of the Academy.")
HECTOR = ("Who was Hector?", "Hector was killed near the gates of Troy by Achilles.")
LANDING = "The crew landed on the Moon in 1969."
PROBE = ("Where did the Apollo 11 crew land?", "They landed in the Sea of Tranquility in July 1969.")


@pytest.mark.parametrize(
    ("question", "stored"),
    [
        ("who taught Plato", TEACHER),
        ("who founded the Academy", TEACHER),
        ("who taught plato", TEACHER),
        ("which volcano is the tallest in the solar system", MARS),
        ("how many queens does a colony have", QUEENS),  # another kind, but the answer holds it all
        ("who killed Hector", HECTOR),
    ],
)
def test_a_stored_answer_that_holds_the_question_answers_it(question: str, stored: tuple[str, str]) -> None:
    verdict = answer_check(question, *stored)
    assert verdict.accept, verdict.reason


@pytest.mark.parametrize(
    ("question", "stored", "why"),
    [
        ("who taught Socrates", TEACHER, "question guard"),  # "taught" is "teach": the stored question's
        ("who did Plato teach", TEACHER, "reverse relation"),
        (
            "who did Plato mentor",
            ("Who did Socrates mentor?", "Plato, later the founder of the Academy."),
            "unchecked",
        ),
        ("what does Socrates teach", TEACHER, "question guard"),  # the stored question alone covers it
        ("what is the smallest volcano on Mars", MARS, "lacks: small"),
        ("how many drones does a colony have", WORKERS, "no number"),
        ("how many workers does a colony have", QUEENS, "no number"),  # "thousands" is no number
        ("when was Olympus Mons discovered", MARS, "lacks: discov"),
        ("when did the crew land on the Sea of Tranquility", PROBE, "asks when"),
        ("who has thousands of workers", QUEENS, "asks who"),
        ("who did Hector kill", HECTOR, "reverse relation"),
        ("why did Socrates not teach Plato", TEACHER, "asks why"),
        ("did Socrates not teach Plato", ("Did Socrates teach?", TEACHER[1]), "negation"),
        ("what did the crew do on the Moon", ("What did the crew do in 1969?", LANDING), "names 1969"),
    ],
)
def test_a_stored_answer_is_refused_when_it_does_not_answer_the_question(
    question: str, stored: tuple[str, str], why: str
) -> None:
    verdict = answer_check(question, *stored)
    assert not verdict.accept
    assert why in verdict.reason


def _seed(path: Path, embedder: Embedder, exchanges: list[tuple[str, str]]) -> None:
    scope = scope_key("test-model", "", "default")
    vectors = np.asarray(embedder.encode([q for q, _ in exchanges]))
    with Store.open(path, progress=False) as store:
        store.put_many(
            [
                Entry(scope=scope, query=q, answer=a, embedding=v, model="test-model")
                for (q, a), v in zip(exchanges, vectors, strict=True)
            ]
        )


def _ask(url: str, question: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=chat(question), timeout=30)


def test_the_gateway_serves_an_answer_that_answers_and_relays_one_that_does_not(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded"
    _seed(path, embedder, [TEACHER, MARS, QUEENS])
    url = start_gateway(store_path=path, writeback_enabled=False).url

    hit = _ask(url, "which volcano is the tallest in the solar system")
    assert hit.headers["x-precog-cache"] == "hit", hit.headers["x-precog-cache-reason"]
    assert hit.headers["x-precog-tier"] == "answer"
    assert "answer check" in hit.headers["x-precog-cache-reason"]
    assert hit.json()["choices"][0]["message"]["content"] == MARS[1]
    assert "answer_check" in hit.headers["server-timing"]

    for question in ("what is the smallest volcano on Mars", "who taught Aristotle"):
        miss = _ask(url, question)
        assert miss.headers["x-precog-cache"] == "miss", (question, miss.headers["x-precog-cache-reason"])
        assert "answer tier" in miss.headers["x-precog-cache-reason"]
        assert miss.json()["choices"][0]["message"]["content"] == answer_for(question)
    assert not [r for r in upstream_state.requests if r["messages"][-1]["content"] == hit.request.content]


def test_the_answer_tier_can_be_switched_off(
    start_gateway: GatewayFactory, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded"
    _seed(path, embedder, [MARS])
    url = start_gateway(store_path=path, writeback_enabled=False, answer_tier=False).url
    assert _ask(url, "which volcano is the tallest in the solar system").headers["x-precog-cache"] == "miss"


def test_a_stored_question_the_guard_accepts_still_needs_the_question_words_in_its_exchange(
    start_gateway: GatewayFactory, embedder: Embedder, tmp_path: Path
) -> None:
    """The guard takes "When was George Gershwin born?" for "What is George Gershwin's career?" (cosine
    0.87): below `answer_covered_below` the exchange must also hold "born", and this one does not."""
    career = ("What is George Gershwin's career?", "Gershwin wrote songs, operas and An American in Paris.")
    path = tmp_path / "seeded"
    _seed(path, embedder, [career])
    guarded = start_gateway(store_path=path, writeback_enabled=False).url
    miss = _ask(guarded, "When was George Gershwin born?")
    assert miss.headers["x-precog-cache"] == "miss"
    assert "lacks: born" in miss.headers["x-precog-cache-reason"]
    _seed(tmp_path / "copy", embedder, [career])
    plain = start_gateway(store_path=tmp_path / "copy", writeback_enabled=False, answer_tier=False).url
    assert _ask(plain, "When was George Gershwin born?").headers["x-precog-cache"] == "hit"
