"""`POST /v1/completions` and `POST /v1/chat/completions`, streamed (SSE) or whole."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from precog.backend.server import responses, sse
from precog.backend.server.generation import EngineStreamingResponse, Job, sse_with_errors
from precog.backend.server.prompts import chat_prompt, completion_prompts
from precog.backend.server.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)
from precog.backend.server.responses import Transcript
from precog.backend.server.state import ServerState, server_state

router = APIRouter()
State = Annotated[ServerState, Depends(server_state)]


def _include_usage(body: CompletionRequest | ChatCompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, state: State
) -> Completion | EngineStreamingResponse:
    arrived, created, response_id = time.perf_counter(), int(time.time()), f"cmpl-{uuid.uuid4().hex}"
    state.check_model(body.model)
    jobs = await state.admit(body, completion_prompts(state.tokenizer, body), response_id, arrived)
    if body.stream:
        chunks = _completion_chunks(state, response_id, created, jobs, body.n, _include_usage(body))
        return EngineStreamingResponse(sse_with_errors(chunks))
    transcripts = await state.streams.collect(jobs, request)
    return responses.completion(response_id, state.model_name, transcripts, body.n, body.logprobs is not None)


async def _completion_chunks(
    state: ServerState, response_id: str, created: int, jobs: list[Job], n: int, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    transcripts = {job.index: Transcript(job.index) for job in jobs}
    async with contextlib.aclosing(state.streams.merged(jobs)) as events:
        async for job, event in events:
            transcript = transcripts[job.index]
            text_start = len(transcript.text)
            transcript.add(event)
            if event.text or event.finish_reason or event.logprob is not None:
                yield sse.event(
                    responses.completion_chunk(
                        response_id, created, state.model_name, job.index, event, text_start
                    )
                )
    if include_usage:
        total = responses.usage(list(transcripts.values()), n)
        yield sse.event(responses.completion_usage_chunk(response_id, created, state.model_name, total))


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, state: State
) -> ChatCompletion | EngineStreamingResponse:
    arrived, created, response_id = time.perf_counter(), int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
    state.check_model(body.model)
    prompt = chat_prompt(state.tokenizer, body.messages)
    jobs = await state.admit(body, [prompt.token_ids], response_id, arrived, prompt.protected)
    if body.stream:
        chunks = _chat_chunks(state, response_id, created, jobs, body.n, _include_usage(body))
        return EngineStreamingResponse(sse_with_errors(chunks))
    transcripts = await state.streams.collect(jobs, request)
    return responses.chat_completion(response_id, state.model_name, transcripts, body.n, body.logprobs)


async def _chat_chunks(
    state: ServerState, response_id: str, created: int, jobs: list[Job], n: int, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    model = state.model_name
    transcripts = {job.index: Transcript(job.index) for job in jobs}
    for job in jobs:
        yield sse.event(responses.chat_role_chunk(response_id, created, model, job.index))
    async with contextlib.aclosing(state.streams.merged(jobs)) as events:
        async for job, event in events:
            transcripts[job.index].add(event)
            if event.text or event.finish_reason or event.logprob is not None:
                yield sse.event(responses.chat_chunk(response_id, created, model, job.index, event))
    if include_usage:
        total = responses.usage(list(transcripts.values()), n)
        yield sse.event(responses.chat_usage_chunk(response_id, created, model, total))
