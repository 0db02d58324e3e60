"""`POST /v1/completions` and `POST /v1/chat/completions`, streamed (SSE) or whole."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from backend.server import responses, sse
from backend.server.generation import EngineStreamingResponse, Job, sse_with_errors
from backend.server.prompts import chat_prompt, completion_prompt
from backend.server.protocol import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest
from backend.server.responses import Transcript
from backend.server.state import ServerState, server_state

router = APIRouter()
State = Annotated[ServerState, Depends(server_state)]


def _include_usage(body: CompletionRequest | ChatCompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, state: State
) -> Completion | EngineStreamingResponse:
    arrived = time.perf_counter()
    state.check_model(body.model)
    prompt = completion_prompt(state.tokenizer, body)
    job = await state.admit(body, prompt, f"cmpl-{uuid.uuid4().hex}", arrived)
    if body.stream:
        return EngineStreamingResponse(sse_with_errors(_completion_chunks(state, job, _include_usage(body))))
    transcript = await state.streams.collect(job, request)
    return responses.completion(job.request_id, state.model_name, transcript, body.logprobs is not None)


async def _completion_chunks(
    state: ServerState, job: Job, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    transcript = Transcript()
    async with contextlib.aclosing(state.streams.events(job)) as events:
        async for event in events:
            text_start = len(transcript.text)
            transcript.add(event)
            if event.text or event.finish_reason or event.logprob is not None:
                chunk = responses.completion_chunk(
                    job.request_id, job.created, state.model_name, event, text_start
                )
                yield sse.event(chunk)
    if include_usage:
        yield sse.event(
            responses.completion_usage_chunk(job.request_id, job.created, state.model_name, transcript)
        )


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, state: State
) -> ChatCompletion | EngineStreamingResponse:
    arrived = time.perf_counter()
    state.check_model(body.model)
    prompt = chat_prompt(state.tokenizer, body)
    job = await state.admit(body, prompt, f"chatcmpl-{uuid.uuid4().hex}", arrived)
    if body.stream:
        return EngineStreamingResponse(sse_with_errors(_chat_chunks(state, job, _include_usage(body))))
    transcript = await state.streams.collect(job, request)
    return responses.chat_completion(job.request_id, state.model_name, transcript, body.logprobs)


async def _chat_chunks(state: ServerState, job: Job, include_usage: bool) -> AsyncGenerator[bytes, None]:
    transcript = Transcript()
    yield sse.event(responses.chat_role_chunk(job.request_id, job.created, state.model_name))
    async with contextlib.aclosing(state.streams.events(job)) as events:
        async for event in events:
            transcript.add(event)
            if event.text or event.finish_reason or event.logprob is not None:
                yield sse.event(responses.chat_chunk(job.request_id, job.created, state.model_name, event))
    if include_usage:
        yield sse.event(responses.chat_usage_chunk(job.request_id, job.created, state.model_name, transcript))
