"""The Pitfalls safeguard (arXiv 2510.00231): which prompt tokens KV compression must never evict.

With several instructions in one prompt, compression drops some of them entirely. So by default a chat
request's system prompt (every `system` / `developer` message) is protected, and so is any part of a
message the client wraps in `<kv-protect>` ... `</kv-protect>`. The markers are removed from the text
the model sees, whether compression runs or not, so marking a span never changes the answer of an
uncompressed request. A request opts out with `kv_compression: {..., "protect": false}`, a server with
`PRECOG_BACKEND_KV_PROTECT=false` (what a quality harness uses to measure the loss without it).

Protected spans are found token-exactly: each message's text is located in the chat-templated string,
and every prompt token whose characters overlap a protected span of it is protected.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from precog.backend.server.protocol import ChatMessage

MARK_OPEN = "<kv-protect>"
MARK_CLOSE = "</kv-protect>"
PROTECTED_ROLES = frozenset({"system", "developer"})

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ProtectedPrompt:
    """A templated chat prompt: its text, token ids and the [start, end) token ranges to protect."""

    text: str
    token_ids: list[int]
    protected: tuple[Range, ...]


def strip_marks(text: str) -> tuple[str, list[Range]]:
    """The text without `<kv-protect>` markers, and the [start, end) character spans they enclosed.

    Raises ValueError for a nested, unopened or unclosed marker.
    """
    clean: list[str] = []
    spans: list[Range] = []
    length, cursor, opened = 0, 0, None
    while True:
        next_open, next_close = text.find(MARK_OPEN, cursor), text.find(MARK_CLOSE, cursor)
        if next_open < 0 and next_close < 0:
            break
        is_open = next_open >= 0 and (next_close < 0 or next_open < next_close)
        at = next_open if is_open else next_close
        clean.append(text[cursor:at])
        length += at - cursor
        if is_open:
            if opened is not None:
                raise ValueError(f"{MARK_OPEN} markers cannot be nested")
            opened = length
            cursor = at + len(MARK_OPEN)
        else:
            if opened is None:
                raise ValueError(f"{MARK_CLOSE} without a matching {MARK_OPEN}")
            if length > opened:
                spans.append((opened, length))
            opened = None
            cursor = at + len(MARK_CLOSE)
    if opened is not None:
        raise ValueError(f"{MARK_OPEN} without a matching {MARK_CLOSE}")
    clean.append(text[cursor:])
    return "".join(clean), spans


def unmarked_messages(messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[list[Range]]]:
    """Messages with their markers removed, and each one's protected character spans (all of a system
    or developer message's text)."""
    plain, spans = [], []
    for message in messages:
        text, marked = strip_marks(message.text())
        plain.append(ChatMessage(role=message.role, content=text, name=message.name))
        spans.append([(0, len(text))] if message.role in PROTECTED_ROLES and text else marked)
    return plain, spans


def token_ranges(
    tokenizer: PreTrainedTokenizerBase, text: str, char_spans: list[Range]
) -> tuple[list[int], tuple[Range, ...]]:
    """Token ids of text (as the server tokenizes it) and the merged ranges of tokens overlapping any
    character span."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded.input_ids), encoded.offset_mapping
    ranges: list[Range] = []
    for i, (start, end) in enumerate(offsets):
        if not any(start < span_end and end > span_start for span_start, span_end in char_spans):
            continue
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ids, tuple(ranges)


def locate(rendered: str, messages: list[ChatMessage], spans: list[list[Range]]) -> list[Range]:
    """The message spans as character spans of the rendered template: each message's text is found
    after the previous one's; a message the template rewrote (not found verbatim) protects nothing."""
    found: list[Range] = []
    cursor = 0
    for message, message_spans in zip(messages, spans, strict=True):
        text = message.text()
        at = rendered.find(text, cursor) if text else -1
        if at < 0:
            continue
        found.extend((at + start, at + end) for start, end in message_spans)
        cursor = at + len(text)
    return found
