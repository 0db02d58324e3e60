"""What the route handlers share: the engine, its tokenizer and limits, the KV source and the metrics,
plus the admission step every generation request goes through before it reaches the engine."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from fastapi import Request
from transformers import PreTrainedTokenizerBase

from precog.backend import AsyncEngine, KVCompression, RequestError, SamplingParams
from precog.backend.reuse import KVReuse
from precog.backend.server.errors import APIError, bad_request, model_not_found
from precog.backend.server.generation import Job, TokenStreams
from precog.backend.server.kv_source import KVSource, matching_prefix
from precog.backend.server.metrics import ServerMetrics
from precog.backend.server.prompts import sampling_params
from precog.backend.server.protocol import ChatCompletionRequest, CompletionRequest, KVCompressionOption
from precog.store import KVBlob


@dataclass(slots=True)
class ServerState:
    engine: AsyncEngine
    kv: KVSource
    metrics: ServerMetrics
    streams: TokenStreams
    kv_protect: bool = True
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def model_name(self) -> str:
        return self.engine.engine.model_name

    @property
    def max_model_len(self) -> int:
        return self.engine.engine.max_model_len

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.engine.engine.tokenizer

    def check_model(self, model: str) -> None:
        if model != self.model_name:
            raise model_not_found(model)

    def check_request(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        kv_prefix: KVBlob | None = None,
        kv_param: str = "kv_blob",
        compression: KVCompression | None = None,
        kv_reuse: KVReuse | None = None,
        reuse_param: str = "kv_reuse_blob",
    ) -> None:
        """The engine's own admission check as a 400 naming the field to blame: a blob that does not fit
        is `kv_param`'s (a reuse reference `reuse_param`'s)."""
        try:
            self.engine.engine.check_request(prompt_token_ids, params, kv_prefix, compression, kv_reuse)
        except RequestError as exc:
            raise refusal(exc, {"kv_prefix": kv_param, "kv_reuse": reuse_param}) from exc

    async def admit(
        self,
        body: CompletionRequest | ChatCompletionRequest,
        prompts: list[list[int]],
        response_id: str,
        arrived: float,
        protected: tuple[tuple[int, int], ...] = (),
    ) -> list[Job]:
        """One job per choice (prompts x n), each checked against the context, sampling rules and engine.

        Nothing runs unless every job is admitted. `arrived` (perf_counter at the request's start)
        anchors the TTFT and latency metrics. With a seed, choice j samples with seed + j, so the n
        choices differ from each other and each is reproducible. `protected`: token ranges of the
        (single) prompt that KV compression keeps, unless the request or the server turns that off.
        """
        blob = await asyncio.to_thread(self.kv.resolve, body.kv_blob, body.kv_blob_id)
        kv_param = "kv_blob_id" if body.kv_blob_id else "kv_blob"
        reference = await asyncio.to_thread(
            self.kv.resolve, body.kv_reuse_blob, body.kv_reuse_blob_id, "kv_reuse_blob"
        )
        reuse_param = "kv_reuse_blob_id" if body.kv_reuse_blob_id else "kv_reuse_blob"
        compression = self.compression_for(body.kv_compression, protected)
        jobs = []
        for i, ids in enumerate(prompts):
            params = sampling_params(body, len(ids), self.max_model_len)
            kv_prefix = matching_prefix(blob, ids) if blob is not None else None
            reuse = KVReuse(reference) if reference is not None else None
            self.check_request(ids, params, kv_prefix, kv_param, compression, reuse, reuse_param)
            for j in range(body.n):
                index = i * body.n + j
                seed = None if params.seed is None else (params.seed + j) % 2**63
                request_id = response_id if len(prompts) * body.n == 1 else f"{response_id}-{index}"
                job_params = replace(params, seed=seed)
                job_reuse = KVReuse(reference) if reference is not None else None  # each its own stats
                jobs.append(
                    Job(request_id, ids, job_params, kv_prefix, arrived, index, compression, job_reuse)
                )
        return jobs

    def compression_for(
        self, option: KVCompressionOption | None, protected: tuple[tuple[int, int], ...]
    ) -> KVCompression | None:
        """The request's compression (None: the engine default, which gets the protection too), with
        the protected ranges unless protection is off for it."""
        if option is None:
            chosen, protect = self.engine.engine.default_compression, self.kv_protect
        else:
            chosen = KVCompression(
                option.method,
                option.ratio,
                decode_interval=option.decode_interval,
                head_adaptive=option.head_adaptive,
            )
            protect = self.kv_protect if option.protect is None else option.protect
        if chosen is None or not chosen.active or not protect or not protected:
            return chosen
        return replace(chosen, protected=protected)


def refusal(exc: RequestError, fields: dict[str, str]) -> APIError:
    """An engine refusal as the client's error: a sentence, and the request field its part came in
    (`fields` names the KV ones, which depend on how the request sent its blob)."""
    message = str(exc)
    sentence = message[:1].upper() + message[1:].rstrip(".") + "."
    if exc.part is None:
        return bad_request(sentence)
    if exc.part == "kv_compression":
        return bad_request(sentence, param="kv_compression")
    return bad_request(sentence, param=fields[exc.part], code="invalid_kv_blob")


def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the state `create_app` attached to this app."""
    state: ServerState = request.app.state.backend
    return state
