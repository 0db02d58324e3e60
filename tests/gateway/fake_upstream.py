"""A deterministic OpenAI-compatible upstream for gateway tests: a test double for fault injection.

It answers every question with a fixed function of the question (so a test knows the expected text), and
can be switched to fail in the ways a real model server fails: HTTP 500/503, slow headers, a stream that
breaks off, truncation by max_tokens. It records what it received and which streams were cancelled.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

Mode = Literal["ok", "error500", "error503", "slow", "break"]
MODELS = ("test-model", "other-model")


def answer_for(question: str) -> str:
    return f"The stored answer to {question.strip()} is forty two."


@dataclass
class UpstreamState:
    mode: Mode = "ok"
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    reject_kv: bool = False  # answer a kv_blob_id with 400, like a server without that blob
    requests: list[dict[str, Any]] = field(default_factory=list)
    streams: dict[str, str] = field(default_factory=dict)  # question -> "finished" | "cancelled"
    answers: dict[str, str] = field(default_factory=dict)  # question -> answer, instead of answer_for

    def reset(self) -> None:
        self.mode, self.delay_s, self.token_delay_s, self.reject_kv = "ok", 0.0, 0.0, False
        self.requests.clear()
        self.streams.clear()
        self.answers.clear()


def _question(body: dict[str, Any]) -> str:
    if "messages" in body:
        content = body["messages"][-1].get("content") or ""
        return content if isinstance(content, str) else "".join(str(p.get("text") or "") for p in content)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else prompt[0]


def create_upstream(state: UpstreamState) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"} for m in MODELS]}

    async def complete(request: Request, chat: bool) -> Response:
        body = await request.json()
        state.requests.append(body)
        named = [param for param in ("kv_blob_id", "kv_reuse_blob_id") if param in body]
        if state.reject_kv and named:
            error = {
                "message": "No KV blob with that id.",
                "type": "invalid_request_error",
                "param": named[0],
                "code": "kv_blob_not_found",
            }
            return JSONResponse({"error": error}, status_code=400)
        if state.mode in ("error500", "error503"):
            status = 500 if state.mode == "error500" else 503
            error = {"message": f"injected {status}", "type": "server_error", "code": None}
            return JSONResponse({"error": error}, status_code=status)
        if state.mode == "slow" or state.delay_s:
            await asyncio.sleep(state.delay_s or 5.0)
        question = _question(body)
        words = state.answers.get(question, answer_for(question)).split(" ")
        limit = body.get("max_tokens")
        finish = "stop"
        if limit is not None and limit < len(words):
            words, finish = words[:limit], "length"
        rid, created, model = f"up-{len(state.requests)}", int(time.time()), body["model"]
        text = " ".join(words)
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        if not body.get("stream"):
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                if chat
                else {"index": 0, "text": text, "finish_reason": finish}
            )
            obj = "chat.completion" if chat else "text_completion"
            return JSONResponse(
                {
                    "id": rid,
                    "object": obj,
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )

        def chunk(piece: str | None, reason: str | None) -> bytes:
            if chat:
                delta = {} if piece is None else {"content": piece}
                choice = {"index": 0, "delta": delta, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": piece or "", "finish_reason": reason}
            obj = "chat.completion.chunk" if chat else "text_completion"
            data = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            done = False
            try:
                for i, word in enumerate(words):
                    if state.mode == "break" and i == 2:
                        raise ConnectionResetError("injected stream break")
                    yield chunk(word if i == 0 else " " + word, None)
                    if state.token_delay_s:
                        await asyncio.sleep(state.token_delay_s)
                yield chunk(None, finish)
                yield b"data: [DONE]\n\n"
                done = True
            finally:
                state.streams[question] = "finished" if done else "cancelled"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    return app
