"""Turn a growing list of output tokens into text deltas, cutting the text at the first stop string.

Text that might be the start of a stop string is held back until it cannot be, so a client never
sees part of a stop string; an incomplete UTF-8 character (a trailing U+FFFD) is held back too.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: list[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self._ids: list[int] = []
        self._full = ""
        self._emitted = 0
        self._stop_at: int | None = None

    @property
    def text(self) -> str:
        """The final text so far: everything decoded, cut before a matched stop string."""
        return self._full if self._stop_at is None else self._full[: self._stop_at]

    @property
    def stopped(self) -> bool:
        return self._stop_at is not None

    def add(self, token_id: int) -> str:
        """Decode one more token; return the text that has become final (possibly empty)."""
        self._ids.append(token_id)
        self._full = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if self._stop:
            search_from = max(0, self._emitted - self._hold)
            hits = [i for i in (self._full.find(s, search_from) for s in self._stop) if i >= 0]
            if hits:
                self._stop_at = min(hits)
                return self._take(self._stop_at)
        safe = len(self._full) - self._hold
        if self._full.endswith(REPLACEMENT):
            safe = min(safe, len(self._full.rstrip(REPLACEMENT)))
        return self._take(safe)

    def flush(self) -> str:
        """At the end of generation: release whatever was held back."""
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        if end <= self._emitted:
            return ""
        delta = self._full[self._emitted : end]
        self._emitted = end
        return delta
