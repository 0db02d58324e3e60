"""A lexical index per scope over each entry's question and answer (BM25, bm25s with a Snowball stemmer).

The vector index finds stored questions that look like a new one; this finds entries whose *answer*
holds the new question's words ("who tutored Alexander?" against "Who did Aristotle tutor?" answered
"Aristotle tutored Alexander the Great."), which the gateway's answer tier then verifies. It is derived
data kept in memory: a scope's index is built on first use and rebuilt, at most once per `refresh_seconds`,
when the store's vector epoch (bumped by every added or removed entry) moved on. Between rebuilds it may
name entries since removed (the caller re-reads each one) and misses entries just added, which the
vector index finds meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import bm25s
import Stemmer

from precog.store.entry import Entry

_STEMMER = Stemmer.Stemmer("english")


@dataclass(slots=True)
class _ScopeText:
    epoch: int
    built: float
    ids: list[str]
    bm25: bm25s.BM25 | None  # None: the scope has no entry with a searchable word


def _tokens(texts: list[str]) -> bm25s.tokenization.Tokenized:
    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, show_progress=False)


class TextIndex:
    def __init__(self, refresh_seconds: float = 1.0) -> None:
        self._refresh = refresh_seconds
        self._scopes: dict[str, _ScopeText] = {}
        self._lock = threading.Lock()

    def search(
        self, scope: str, text: str, k: int, epoch: int, entries: Callable[[], Iterable[Entry]]
    ) -> list[tuple[str, float]]:
        """Up to `k` (entry id, BM25 score) of `scope` for `text`, best first; `entries` lists the
        scope's entries when the index must be (re)built at store `epoch`."""
        indexed = self._current(scope, epoch, entries)
        if indexed.bm25 is None:
            return []
        query = _tokens([text])
        if not query.vocab:
            return []
        found, scores = indexed.bm25.retrieve(
            query, k=min(k, len(indexed.ids)), show_progress=False, n_threads=1
        )
        return [(indexed.ids[int(i)], float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]

    def _current(self, scope: str, epoch: int, entries: Callable[[], Iterable[Entry]]) -> _ScopeText:
        with self._lock:
            indexed = self._scopes.get(scope)
            fresh = indexed is not None and (
                indexed.epoch == epoch or time.monotonic() - indexed.built < self._refresh
            )
            if indexed is None or not fresh:
                indexed = self._build(epoch, list(entries()))
                self._scopes[scope] = indexed
            return indexed

    @staticmethod
    def _build(epoch: int, entries: list[Entry]) -> _ScopeText:
        ids = [e.id for e in entries]
        tokens = _tokens([f"{e.query}\n{e.answer}" for e in entries])
        bm25 = None
        if ids and tokens.vocab:
            bm25 = bm25s.BM25()
            bm25.index(tokens, show_progress=False)
        return _ScopeText(epoch, time.monotonic(), ids, bm25)
