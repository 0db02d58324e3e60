"""What the cache sees of a request: the question, the scope it must be answered in, and whether it may be.

The scope covers model, system prompt, tenant and every earlier turn, so the same last question in another
conversation is another question (GPTCache's most reported bug is keying on the last message only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from precog.gateway.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from precog.gateway.scoping import ScopeTemplate, templated_prompt
from precog.store import Turn, scope_key

Kind = Literal["chat", "completion"]

# Text completion of a prompt and a chat answer to the same words are different answers: the completion
# kind is its own scope through a marker turn that no chat request can produce.
_COMPLETION_MARKER = Turn(role="precog:text-completion", content="")


@dataclass(frozen=True, slots=True)
class CacheQuery:
    kind: Kind
    model: str
    tenant: str
    question: str
    system_prompt: str = ""
    earlier_turns: tuple[Turn, ...] = ()
    temperature: float | None = None
    uncacheable: str | None = None  # why the cache must be skipped
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    named_scope: str | None = None  # the request's own (x-precog-scope): the system prompt leaves the scope
    relayable: bool = True  # False under only-if-cached: the request never reaches the upstream

    @property
    def scope(self) -> str:
        system = self.system_prompt if self.named_scope is None else f"precog:scope:{self.named_scope}"
        return scope_key(self.model, system, self.tenant, self.earlier_turns)

    def misfit(self, answer: str, completion_tokens: int) -> str | None:
        """Why a stored answer is not what this request would get from the model, or None if it is.

        An answer longer than the request's token limit, or one the request's stop strings would have cut,
        differs from the model's reply to this request: serving it whole would break the request's contract.
        """
        if self.max_tokens is not None and completion_tokens > self.max_tokens:
            return (
                f"the stored answer ({completion_tokens} tokens) is longer than max_tokens={self.max_tokens}"
            )
        cut = next((s for s in self.stop if s and s in answer), None)
        if cut is not None:
            return f"the stored answer contains the stop string {cut!r}"
        return None

    def next_turn_scope(self, answer: str) -> str:
        """The scope of this conversation's next question once `answer` has been given."""
        turns = (*self.earlier_turns, Turn("user", self.question), Turn("assistant", answer))
        return scope_key(self.model, self.system_prompt, self.tenant, turns)


def _text(message: ChatMessage) -> str | None:
    """The message's text, or None when it carries something other than text (images, audio)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    if any(part.type != "text" or part.text is None for part in message.content):
        return None
    return "".join(part.text or "" for part in message.content)


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _chat_blocker(request: ChatCompletionRequest) -> str | None:
    if request.n != 1:
        return "n > 1 asks for several samples"
    if request.tools:
        return "tool calls depend on the tool definitions"
    if request.response_format is not None:
        return "a response format constrains the answer"
    if request.logprobs:
        return "logprobs cannot be served from storage"
    if request.messages[-1].role != "user":
        return "the last message is not a user question"
    return None


def chat_query(
    request: ChatCompletionRequest,
    tenant: str,
    templates: Sequence[ScopeTemplate] = (),
    named_scope: str | None = None,
) -> CacheQuery:
    """The request as the cache sees it; the system prompt with the tenant's declared variable parts
    replaced (`templates`), so one app's users share a scope."""
    messages = request.messages
    leading_system = 0
    while leading_system < len(messages) and messages[leading_system].role in ("system", "developer"):
        leading_system += 1
    texts = [_text(m) for m in messages]
    blocker = _chat_blocker(request) or (
        "a message carries non-text content" if any(t is None for t in texts) else None
    )
    system = "\n".join(t or "" for t in texts[:leading_system])
    earlier = tuple(
        Turn(m.role, t or "")
        for m, t in zip(messages[leading_system:-1], texts[leading_system:-1], strict=True)
    )
    return CacheQuery(
        kind="chat",
        model=request.model,
        tenant=tenant,
        question=texts[-1] or "",
        system_prompt=templated_prompt(system, tenant, templates),
        earlier_turns=earlier,
        temperature=request.temperature,
        uncacheable=blocker,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        stop=_stops(request.stop),
        named_scope=named_scope,
    )


def completion_query(request: CompletionRequest, tenant: str, named_scope: str | None = None) -> CacheQuery:
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    blocker = None
    if len(prompts) != 1:
        blocker = "a batch of prompts"
    elif request.n != 1:
        blocker = "n > 1 asks for several samples"
    elif request.echo or request.logprobs is not None or request.suffix is not None:
        blocker = "echo, logprobs and suffix cannot be served from storage"
    return CacheQuery(
        kind="completion",
        model=request.model,
        tenant=tenant,
        question=prompts[0] if prompts else "",
        earlier_turns=(_COMPLETION_MARKER,),
        temperature=request.temperature,
        uncacheable=blocker,
        max_tokens=request.max_tokens,
        stop=_stops(request.stop),
        named_scope=named_scope,
    )
