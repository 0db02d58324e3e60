"""Request bodies of the OpenAI endpoints the gateway serves.

Only the fields the gateway reads are typed (and so type-checked); anything else an OpenAI client sends
(`seed`, `user`, `logit_bias`, ...) passes through to the upstream untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Passthrough(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(_Passthrough):
    type: str
    text: str | None = None


class ChatMessage(_Passthrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(_Passthrough):
    include_usage: bool = False


class _Sampling(_Passthrough):
    model: str = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
