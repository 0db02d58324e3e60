"""Which entries an invalidation removes: those that match every filter it was given."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from precog.store.entry import Entry
from precog.store.scope import normalise_text


@dataclass(frozen=True, slots=True)
class Selection:
    ids: frozenset[str] | None
    scope: str | None
    needle: str | None  # normalised text the query must contain
    cutoff: float | None  # created before this time

    @classmethod
    def of(
        cls,
        ids: Iterable[str] | None,
        scope: str | None,
        substring: str | None,
        older_than: float | None,
        now: float,
    ) -> Selection:
        """`older_than` is an age in seconds; every bad filter is a ValueError saying which."""
        if ids is None and scope is None and substring is None and older_than is None:
            raise ValueError("invalidate needs at least one of ids, scope, substring, older_than")
        if older_than is not None and (not math.isfinite(older_than) or older_than < 0):
            raise ValueError("older_than must be a non-negative number of seconds")
        if isinstance(ids, str):
            raise ValueError("ids must be a collection of entry ids, not a single string")
        if substring is not None and not normalise_text(substring):
            raise ValueError("substring must contain some text (an empty one would match everything)")
        return cls(
            None if ids is None else frozenset(ids),
            scope,
            None if substring is None else normalise_text(substring),
            None if older_than is None else now - older_than,
        )

    def matches(self, entry: Entry) -> bool:
        return (
            (self.ids is None or entry.id in self.ids)
            and (self.scope is None or entry.scope == self.scope)
            and (self.needle is None or self.needle in normalise_text(entry.query))
            and (self.cutoff is None or entry.created < self.cutoff)
        )
