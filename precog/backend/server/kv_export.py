"""`POST /v1/kv/export`: prefill a prompt and answer with its KV cache as store-format blob bytes.

The bytes are `KVBlob.to_bytes()`, so a caller can keep them in the store (`Store.put_blob`) or send
them back as a completion's `kv_blob`; headers carry the token count and model without parsing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from precog.backend import SamplingParams
from precog.backend.server.errors import bad_request, context_length_exceeded
from precog.backend.server.prompts import chat_prompt, tokenize
from precog.backend.server.protocol import KVExportRequest
from precog.backend.server.state import ServerState, server_state

router = APIRouter()
BLOB_MEDIA_TYPE = "application/octet-stream"


def _prompt_token_ids(state: ServerState, body: KVExportRequest) -> tuple[list[int], str]:
    given = [name for name in ("prompt", "messages", "prompt_token_ids") if getattr(body, name) is not None]
    if len(given) != 1:
        raise bad_request(
            f"Give exactly one of prompt, messages or prompt_token_ids (got {', '.join(given) or 'none'}).",
            param=given[1] if len(given) > 1 else "prompt",
        )
    if body.prompt is not None:
        return tokenize(state.tokenizer, body.prompt), "prompt"
    if body.messages is not None:
        return chat_prompt(state.tokenizer, body.messages, body.add_generation_prompt).token_ids, "messages"
    return list(body.prompt_token_ids or []), "prompt_token_ids"


@router.post("/v1/kv/export", response_class=Response)
async def export_kv(body: KVExportRequest, state: Annotated[ServerState, Depends(server_state)]) -> Response:
    if body.model is not None:
        state.check_model(body.model)
    ids, param = _prompt_token_ids(state, body)
    if not ids:
        raise bad_request("The prompt must not be empty.", param=param)
    # Export runs the prompt plus one sampled token, so the prompt must leave room for that token.
    if len(ids) >= state.max_model_len:
        raise context_length_exceeded(state.max_model_len, len(ids), None, param)
    state.check_request(ids, SamplingParams(temperature=0.0, max_tokens=1))
    blob = await state.engine.export_kv(ids)
    data = await asyncio.to_thread(blob.to_bytes)
    headers = {
        "x-precog-kv-tokens": str(len(blob.token_ids)),
        "x-precog-kv-layers": str(blob.num_layers),
        "x-precog-model": blob.model,
    }
    return Response(data, media_type=BLOB_MEDIA_TYPE, headers=headers)
