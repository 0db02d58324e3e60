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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import bm25s
import Stemmer

from precog.store.entry import Entry

if TYPE_CHECKING:
    from precog.store.entry_table import EntryTable

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
    def __init__(self, table: EntryTable, refresh_seconds: float = 1.0) -> None:
        self._table = table
        self._refresh = refresh_seconds
        self._scopes: dict[str, _ScopeText] = {}
        self._lock = threading.Lock()

    def search(self, scope: str, text: str, k: int, epoch: int) -> list[tuple[Entry, float]]:
        """Up to `k` live, unexpired entries of `scope` for `text` with their BM25 scores, best first; the
        index is (re)built from the scope's entries when the store's `epoch` moved on."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        indexed = self._current(scope, epoch)
        query = _tokens([text])
        if indexed.bm25 is None or not query.vocab:
            return []
        found, scores = indexed.bm25.retrieve(
            query, k=min(k, len(indexed.ids)), show_progress=False, n_threads=1
        )
        scored = [(indexed.ids[int(i)], float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]
        return self._table.live_in_scope(scored, scope)

    def _current(self, scope: str, epoch: int) -> _ScopeText:
        with self._lock:
            indexed = self._scopes.get(scope)
            fresh = indexed is not None and (
                indexed.epoch == epoch or time.monotonic() - indexed.built < self._refresh
            )
            if indexed is None or not fresh:
                indexed = self._build(epoch, list(self._table.iter_entries(scope)))
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
