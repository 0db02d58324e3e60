"""A small deterministic OpenAI-compatible server for fault injection (down, garbage, slow, no KV export).

It plays a model that has read the document in its prompt: asked for questions, it writes one question per
sentence of the document that is not already listed as asked, in the messy style of a small model (a
preamble, numbering, a near-duplicate); asked to answer, it quotes the document's first sentence. It serves
real HTTP through uvicorn, so the pipeline's client, retries and error handling run for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from precog.store import KVBlob

MODEL = "fake-model"
ASK = "What does the document say about {}?"


@dataclass
class Behaviour:
    mode: str = "ok"  # ok | garbage | down | empty
    kv: bool = True
    delay: float = 0.0
    answer_text: str = ""  # set: every answer is this text, cut at max_tokens words like a real server
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # per chat request
    kv_exports: int = 0

    def reset(self) -> None:
        self.mode, self.kv, self.delay, self.kv_exports, self.answer_text = "ok", True, 0.0, 0, ""
        self.requests.clear()
        self.authorizations.clear()


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def _question(sentence: str, ask: str) -> str:
    return ask.format(" ".join(re.findall(r"[A-Za-z0-9']+", sentence)[:7]))


def _generation(user: str, wanted: int, ask: str) -> str:
    document = user.split("Document:\n", 1)[1].split("\n\nWrite ", 1)[0]
    asked = set(re.findall(r"^- (.*)$", user, flags=re.MULTILINE))
    fresh = [q for q in (_question(s, ask) for s in _sentences(document)) if q not in asked][:wanted]
    if fresh:  # a near-duplicate right after the first question: only the embedding check can catch it
        fresh.insert(1, fresh[0].replace("What does", "What, does"))
    lines = ["Sure! Here are some questions a user might ask:", ""]
    lines += [f"{number}. {question}" for number, question in enumerate(fresh, start=1)]
    return "\n".join(lines)


def _kv_blob(messages: list[dict[str, str]]) -> bytes:
    text = "\n".join(m["content"] for m in messages)
    token_ids = list(text.encode()[:64])
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    generator = torch.Generator().manual_seed(seed)
    keys = [torch.randn(1, len(token_ids), 8, generator=generator) for _ in range(2)]
    values = [torch.randn(1, len(token_ids), 8, generator=generator) for _ in range(2)]
    return KVBlob(model=MODEL, token_ids=token_ids, keys=keys, values=values).to_bytes()


def make_app(behaviour: Behaviour, model: str, ask: str) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> Response:
        if behaviour.mode == "down":
            return JSONResponse({"error": {"message": "down"}}, status_code=503)
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model"}]})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        behaviour.requests.append(body)
        behaviour.authorizations.append(request.headers.get("authorization"))
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.mode == "down":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if behaviour.mode == "garbage":
            return Response(b"<html>definitely not json</html>", media_type="text/html")
        messages = body["messages"]
        user = messages[-1]["content"]
        if "Document:\n" in user:
            wanted = int(re.search(r"Write (\d+) different", user).group(1))
            text = _generation(user, wanted, ask)
        else:
            document = messages[0]["content"].split("Document:\n", 1)[1]
            text = f"According to the document, {_sentences(document)[0]}"
        finish_reason = "stop"
        if behaviour.answer_text and "Document:\n" not in user:
            words = behaviour.answer_text.split()
            if len(words) > body["max_tokens"]:
                words, finish_reason = words[: body["max_tokens"]], "length"
            text = " ".join(words)
        if behaviour.mode == "empty":
            text = ""
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return JSONResponse(
            {
                "id": "fake",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_tokens + len(text.split()),
                },
            }
        )

    @app.post("/v1/kv/export")
    async def kv_export(request: Request) -> Response:
        body = await request.json()
        behaviour.kv_exports += 1
        if not behaviour.kv:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        return Response(_kv_blob(body["messages"]), media_type="application/octet-stream")

    return app


class FakeUpstream:
    """The server on a free port, in a background thread of the test process. `model` is the id it serves
    and `ask` the template of the questions it writes, so a second one plays another model."""

    def __init__(self, port: int, model: str = MODEL, ask: str = ASK) -> None:
        self.behaviour = Behaviour()
        self.url = f"http://127.0.0.1:{port}"
        app = make_app(self.behaviour, model, ask)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> FakeUpstream:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
