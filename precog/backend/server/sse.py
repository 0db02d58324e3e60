"""Server-sent events in the framing OpenAI streams use: `data: <json>` lines, then `data: [DONE]`."""

from __future__ import annotations

from pydantic import BaseModel

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: BaseModel) -> bytes:
    """One SSE event; unset optional fields stay in as null, as in OpenAI's chunks."""
    return b"data: " + payload.model_dump_json().encode() + b"\n\n"


def error_event(payload: BaseModel) -> bytes:
    """An error after the stream started: the SDK raises APIError on an `event: error` frame."""
    return b"event: error\ndata: " + payload.model_dump_json().encode() + b"\n\n"
