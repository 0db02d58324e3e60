"""Engine token events → OpenAI response objects, for whole responses and for stream chunks.

`Transcript` accumulates one request's events; the builders below turn a single event (streaming)
or a finished transcript (non-streaming) into the objects of `protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from precog.backend import TokenEvent, TokenLogprob
from precog.backend.server import protocol as p
from precog.backend.server.errors import APIError


@dataclass(slots=True)
class Transcript:
    """Everything a finished choice needs, gathered event by event."""

    index: int = 0
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def add(self, event: TokenEvent) -> None:
        if event.finish_reason == "abort":
            raise APIError(503, "The server aborted the request before it finished.", type="server_error")
        self.text += event.text
        if event.logprob is not None:
            self.logprobs.append(event.logprob)
        self.finish_reason = event.finish_reason
        self.prompt_tokens = event.prompt_tokens
        self.completion_tokens = event.completion_tokens
        self.cached_tokens = event.cached_tokens


def usage(transcripts: list[Transcript], n: int) -> p.Usage:
    """Each prompt's tokens count once (its n choices share them); every choice's output counts."""
    firsts = [t for t in transcripts if t.index % n == 0]
    prompt = sum(t.prompt_tokens for t in firsts)
    completion = sum(t.completion_tokens for t in transcripts)
    return p.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details={"cached_tokens": sum(t.cached_tokens for t in firsts)},
    )


# ---- /v1/completions ----------------------------------------------------------------------------


def completion_logprobs(logprobs: list[TokenLogprob], text_start: int) -> p.CompletionLogprobs:
    """The legacy completions logprobs shape: parallel lists, offsets into the generated text."""
    offsets = []
    offset = text_start
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return p.CompletionLogprobs(
        tokens=[lp.token for lp in logprobs],
        token_logprobs=[lp.logprob for lp in logprobs],
        top_logprobs=[{alt.token: alt.logprob for alt in lp.top} for lp in logprobs],
        text_offset=offsets,
    )


def completion(
    response_id: str, model: str, transcripts: list[Transcript], n: int, want_logprobs: bool
) -> p.Completion:
    choices = [
        p.CompletionChoice(
            index=t.index,
            text=t.text,
            logprobs=completion_logprobs(t.logprobs, 0) if want_logprobs else None,
            finish_reason=t.finish_reason,
        )
        for t in transcripts
    ]
    return p.Completion(id=response_id, model=model, choices=choices, usage=usage(transcripts, n))


def completion_chunk(
    response_id: str, created: int, model: str, index: int, event: TokenEvent, text_start: int
) -> p.Completion:
    logprobs = completion_logprobs([event.logprob], text_start) if event.logprob is not None else None
    choice = p.CompletionChoice(
        index=index, text=event.text, logprobs=logprobs, finish_reason=event.finish_reason
    )
    return p.Completion(id=response_id, created=created, model=model, choices=[choice])


def completion_usage_chunk(response_id: str, created: int, model: str, total: p.Usage) -> p.Completion:
    return p.Completion(id=response_id, created=created, model=model, choices=[], usage=total)


# ---- /v1/chat/completions -----------------------------------------------------------------------


def _token_logprob(lp: TokenLogprob) -> p.TokenLogprob:
    return p.TokenLogprob(
        token=lp.token,
        logprob=lp.logprob,
        bytes=list(lp.token.encode()),
        top_logprobs=[
            p.TopLogprob(token=a.token, logprob=a.logprob, bytes=list(a.token.encode())) for a in lp.top
        ],
    )


def chat_logprobs(logprobs: list[TokenLogprob]) -> p.ChoiceLogprobs:
    return p.ChoiceLogprobs(content=[_token_logprob(lp) for lp in logprobs])


def chat_completion(
    response_id: str, model: str, transcripts: list[Transcript], n: int, want_logprobs: bool
) -> p.ChatCompletion:
    choices = [
        p.ChatChoice(
            index=t.index,
            message=p.AssistantMessage(content=t.text),
            logprobs=chat_logprobs(t.logprobs) if want_logprobs else None,
            finish_reason=t.finish_reason,
        )
        for t in transcripts
    ]
    return p.ChatCompletion(id=response_id, model=model, choices=choices, usage=usage(transcripts, n))


def chat_role_chunk(response_id: str, created: int, model: str, index: int) -> p.ChatCompletionChunk:
    """A choice's first chunk announces the role, with empty content, as OpenAI's does."""
    choice = p.ChatChunkChoice(index=index, delta=p.Delta(role="assistant", content=""))
    return p.ChatCompletionChunk(id=response_id, created=created, model=model, choices=[choice])


def chat_chunk(
    response_id: str, created: int, model: str, index: int, event: TokenEvent
) -> p.ChatCompletionChunk:
    choice = p.ChatChunkChoice(
        index=index,
        delta=p.Delta(content=event.text or None) if event.finish_reason else p.Delta(content=event.text),
        logprobs=chat_logprobs([event.logprob]) if event.logprob is not None else None,
        finish_reason=event.finish_reason,
    )
    return p.ChatCompletionChunk(id=response_id, created=created, model=model, choices=[choice])


def chat_usage_chunk(response_id: str, created: int, model: str, total: p.Usage) -> p.ChatCompletionChunk:
    return p.ChatCompletionChunk(id=response_id, created=created, model=model, choices=[], usage=total)
