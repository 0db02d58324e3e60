"""Lexical search over each entry's question and answer (BM25): what the gateway's answer tier retrieves."""

from __future__ import annotations

import time

import numpy as np

from precog.store import Entry, Store
from tests.store.conftest import unit


def _entry(rng, query: str, answer: str, scope: str = "scope-a", **fields) -> Entry:
    return Entry(scope=scope, query=query, answer=answer, embedding=unit(rng), model="test-model", **fields)


def test_an_entry_is_found_by_the_words_of_its_answer_in_its_own_scope_only(
    store: Store, rng: np.random.Generator
) -> None:
    tutor = _entry(rng, query="Who did Aristotle tutor?", answer="Aristotle tutored Alexander the Great.")
    albedo = _entry(rng, query="What is albedo?", answer="Albedo is the reflectivity of a surface.")
    elsewhere = _entry(rng, scope="scope-b", query="Who tutored Alexander?", answer="Aristotle did.")
    store.put_many([tutor, albedo, elsewhere])
    found = store.search_text("scope-a", "who tutored alexander", k=5)
    assert [entry.id for entry, _ in found] == [tutor.id]
    assert found[0][1] > 0
    assert [e.id for e, _ in store.search_text("scope-a", "how reflective are surfaces", k=5)] == [albedo.id]
    assert store.search_text("scope-a", "the of and", k=5) == []
    assert store.search_text("scope-c", "alexander", k=5) == []


def test_text_search_follows_added_and_removed_entries(store: Store, rng: np.random.Generator) -> None:
    first = _entry(rng, query="What is albedo?", answer="Albedo is the reflectivity of a surface.")
    store.put(first)
    assert [e.id for e, _ in store.search_text("scope-a", "reflectivity", k=3)] == [first.id]
    store.delete(first.id)
    assert store.search_text("scope-a", "reflectivity", k=3) == []  # re-read: a removed entry never returns
    later = _entry(rng, query="What is a reflection coefficient?", answer="Another name for reflectivity.")
    store.put(later)
    deadline = time.monotonic() + 5
    while not store.search_text("scope-a", "reflectivity", k=3) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [e.id for e, _ in store.search_text("scope-a", "reflectivity", k=3)] == [later.id]


def test_expired_entries_are_not_found(store: Store, rng: np.random.Generator) -> None:
    store.put(_entry(rng, query="What is albedo?", answer="Reflectivity.", expires=time.time() - 1))
    assert store.search_text("scope-a", "albedo", k=3) == []
