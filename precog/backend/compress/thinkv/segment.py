"""Split generated tokens into thoughts at delimiter tokens (ThinKV, arXiv 2510.01290, section 3).

The paper treats a reasoning trace as a sequence of thoughts separated where the text breaks: the
reasoning models it studies end a thought with a paragraph or sentence break. We cut after a token
whose text holds a newline or ends a sentence, once the thought has `min_len` tokens, and force a cut
after `max_len` tokens so a run-on thought cannot hold compression back. A "." inside a decimal
number cuts too (the tokenizer splits "3.5" into three tokens); min_len keeps such cuts rare.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SENTENCE_ENDS = (".", "!", "?", ":", ";")


def delimiter_ids(vocab: Iterable[tuple[int, str]]) -> frozenset[int]:
    """The ids of tokens (id, decoded text) that end a thought: a newline inside, or a sentence end."""
    ids = set()
    for token_id, text in vocab:
        stripped = text.rstrip(" ")
        if "\n" in text or stripped.endswith(SENTENCE_ENDS):
            ids.add(token_id)
    return frozenset(ids)


def split_thoughts(
    token_ids: Sequence[int],
    start: int,
    end: int,
    delimiters: frozenset[int],
    min_len: int,
    max_len: int,
) -> tuple[list[tuple[int, int]], int]:
    """Thoughts [s, e) closed among positions [start, end) and where the still open thought starts.

    A thought closes after a delimiter once it holds at least min_len tokens, or after max_len tokens.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"thought lengths need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if not 0 <= start <= end <= len(token_ids):
        raise ValueError(f"span [{start}, {end}) is outside the {len(token_ids)} tokens")
    closed = []
    open_start = start
    for i in range(start, end):
        length = i + 1 - open_start
        if (token_ids[i] in delimiters and length >= min_len) or length >= max_len:
            closed.append((open_start, i + 1))
            open_start = i + 1
    return closed, open_start
