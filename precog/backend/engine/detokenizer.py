"""Turn a growing list of output tokens into text deltas, cutting the text at the first stop string.

Each step decodes only a short window of recent tokens (the last finished text piece and what came
after it), so the cost per token stays flat however long the output grows. Text that might be the
start of a stop string is held back until it cannot be, so a client never sees part of a stop string;
bytes of an incomplete UTF-8 character wait until the character is complete.
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
        self._prefix_offset = 0  # window start: context so the next piece decodes as it would in full
        self._read_offset = 0  # tokens before this are already in _full
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
        piece = self._pending()
        if piece and not piece.endswith(REPLACEMENT):
            self._full += piece
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        if self._stop:
            search_from = max(0, self._emitted - self._hold)
            hits = [i for i in (self._full.find(s, search_from) for s in self._stop) if i >= 0]
            if hits:
                self._stop_at = min(hits)
                return self._take(self._stop_at)
        return self._take(len(self._full) - self._hold)

    def flush(self) -> str:
        """At the end of generation: release whatever was held back, incomplete characters included."""
        if self._stop_at is None:
            self._full += self._pending()
            self._read_offset = len(self._ids)
        return self._take(len(self.text))

    def _pending(self) -> str:
        """Text of the tokens not yet in _full, decoded in the context of the previous piece."""
        window = self._ids[self._prefix_offset :]
        context = self._ids[self._prefix_offset : self._read_offset]
        new = str(self._tokenizer.decode(window, skip_special_tokens=True))
        old = str(self._tokenizer.decode(context, skip_special_tokens=True))
        return new[len(old) :]

    def _take(self, end: int) -> str:
        if end <= self._emitted:
            return ""
        delta = self._full[self._emitted : end]
        self._emitted = end
        return delta
