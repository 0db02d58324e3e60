"""The OpenAI wire format both ways: stored answers rendered as responses or SSE chunks, and upstream
SSE streams read back into one answer (for write-back) while they are relayed untouched."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from precog.gateway.query import Kind

DONE = b"data: [DONE]\n\n"
_CHUNK_CHARS = 48


def estimate_tokens(text: str) -> int:
    """Rough token count (about four characters a token) for usage of stored answers."""
    return max(1, (len(text) + 3) // 4) if text else 0


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A stored answer about to be served, with the token counts it saves."""

    kind: Kind
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def response_id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.id

    def completion(self) -> dict[str, Any]:
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": self.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": self.text, "logprobs": None, "finish_reason": "stop"}
            obj = "text_completion"
        return {
            "id": self.response_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "precog-store",
            "choices": [choice],
            "usage": _usage(self.prompt_tokens, self.completion_tokens),
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "precog-store",
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def _choice(self, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if self.kind == "completion":
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if first:
            delta = {"role": "assistant", **delta}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def sse(self, include_usage: bool) -> Iterator[bytes]:
        """The answer as the chunk sequence an OpenAI server would stream, ending in `data: [DONE]`."""
        if self.kind == "chat":
            yield self._chunk([self._choice("", None, first=True)])
        for start in range(0, len(self.text), _CHUNK_CHARS):
            yield self._chunk([self._choice(self.text[start : start + _CHUNK_CHARS], None)])
        yield self._chunk([self._choice(None if self.kind == "chat" else "", "stop")])
        if include_usage:
            yield self._chunk([], usage=_usage(self.prompt_tokens, self.completion_tokens))
        yield DONE


@dataclass(slots=True)
class AnswerCollector:
    """Reads an upstream answer (SSE bytes or a JSON body) into text, finish reason and usage."""

    kind: Kind
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    done: bool = False
    _pending: bytes = b""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _take_choice(self, choice: dict[str, Any], streamed: bool) -> None:
        if choice.get("index", 0) != 0:
            return
        if self.kind == "chat":
            message = choice.get("delta" if streamed else "message") or {}
            piece = message.get("content")
        else:
            piece = choice.get("text")
        if isinstance(piece, str):
            self.parts.append(piece)
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])

    def _take_usage(self, body: dict[str, Any]) -> None:
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.completion_tokens = usage.get("completion_tokens")
            self.prompt_tokens = usage.get("prompt_tokens")

    def feed_sse(self, data: bytes) -> None:
        """Consume relayed bytes; events may be split anywhere across calls."""
        self._pending += data.replace(b"\r\n", b"\n")
        *events, self._pending = self._pending.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                    continue
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    continue
                if not isinstance(chunk, dict) or "error" in chunk:
                    self.finish_reason = "error"
                    continue
                for choice in chunk.get("choices") or ():
                    self._take_choice(choice, streamed=True)
                self._take_usage(chunk)

    def take_body(self, body: dict[str, Any]) -> None:
        for choice in body.get("choices") or ():
            self._take_choice(choice, streamed=False)
        self._take_usage(body)
        self.done = True

    @property
    def complete(self) -> bool:
        """Finished normally: not truncated (`length`), not an error, not cut off before the end."""
        return self.done and self.finish_reason == "stop" and bool(self.text.strip())
