"""The OpenAI wire format the server speaks: request bodies in, response and stream-chunk objects out.

Field names, defaults and ranges follow the OpenAI API reference so that the official SDK and other
OpenAI-compatible clients work unchanged. precog's own extension fields (`top_k`, `ignore_eos`,
`kv_blob`, `kv_blob_id`, `kv_reuse_blob`, `kv_reuse_blob_id`, `kv_compression`) are optional and
documented where they are declared.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_serializer,
)

MAX_CHOICES = 128  # prompts x n of one request, as in OpenAI's API
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None


class KVCompressionOption(BaseModel):
    """precog extension `kv_compression`: evict `ratio` of the prompt's KV after prefill with `method`.

    `protect` (chat only; absent: the server's `kv_protect` setting, on by default) keeps the system
    prompt and `<kv-protect>`-marked spans whatever the press scores (precog/backend/server/protection.py).
    `decode_interval` N > 0 compresses again every N generated tokens; `head_adaptive` lets the KV heads
    of a layer share its budget unevenly.
    """

    model_config = ConfigDict(extra="forbid")

    method: StrictStr
    ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    protect: StrictBool | None = None
    decode_interval: Annotated[StrictInt, Field(ge=0)] = 0
    head_adaptive: StrictBool = False


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False


class _Sampling(BaseModel):
    """Fields shared by both generation endpoints."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    temperature: Annotated[StrictFloat, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[StrictFloat, Field(gt=0.0, le=1.0)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_CHOICES)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: StrictInt | None = None
    presence_penalty: StrictFloat = 0.0
    frequency_penalty: StrictFloat = 0.0
    user: StrictStr | None = None
    # precog extensions
    top_k: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None, description="Sample only among the k most likely tokens (0 or absent: no limit)."
    )
    ignore_eos: StrictBool = Field(default=False, description="Keep generating past the EOS token.")
    kv_blob: StrictStr | None = Field(
        default=None, description="Base64 of a KV blob (store format) whose matching prefix skips prefill."
    )
    kv_blob_id: StrictStr | None = Field(
        default=None, description="Id of a KV blob in the server's configured store, used like kv_blob."
    )
    kv_reuse_blob: StrictStr | None = Field(
        default=None,
        description="Base64 of a similar prompt's KV blob to prefill from approximately (semantic KV reuse).",
    )
    kv_reuse_blob_id: StrictStr | None = Field(
        default=None, description="Id of a KV blob in the server's configured store, used like kv_reuse_blob."
    )
    kv_compression: KVCompressionOption | None = Field(
        default=None,
        description="KV-cache compression of this request (method 'none' turns the server default off).",
    )

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0.0:
            raise ValueError("presence and frequency penalties are not supported by this server (use 0)")
        return value


class CompletionRequest(_Sampling):
    """POST /v1/completions. `prompt` is a text, a list of token ids, or a batch of either."""

    prompt: (
        StrictStr
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[StrictStr], Field(min_length=1)]
        | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
    )
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = 16
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None
    echo: Literal[False] = False

    def prompts(self) -> list[str | list[int]]:
        """The batch of prompts (one for a plain text or token list); each gets `n` choices."""
        single = isinstance(self.prompt, str) or isinstance(self.prompt[0], int)
        batch: list[Any] = [self.prompt] if single else list(self.prompt)
        return batch


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]
    name: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions, rendered through the model's chat template."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class KVExportRequest(BaseModel):
    """POST /v1/kv/export: exactly one of `prompt`, `messages` or `prompt_token_ids`."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    prompt_token_ids: Annotated[list[StrictInt], Field(min_length=1)] | None = None
    add_generation_prompt: StrictBool = Field(
        default=True, description="With `messages`: end with the assistant header, as a chat request does."
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


class Completion(BaseModel):
    """Both the full response and a stream chunk of /v1/completions (same object type in OpenAI)."""

    id: str = Field(default_factory=lambda: _id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: _id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    """A chat stream's increment; absent fields are left out, as in OpenAI's chunks (`"delta": {}`)."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer
    def _present_only(self) -> dict[str, str]:
        return {k: v for k, v in (("role", self.role), ("content", self.content)) if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "precog"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
