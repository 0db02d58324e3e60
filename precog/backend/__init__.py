"""The model server's engine: our Llama-family model over a paged KV cache with continuous batching.

In-process: `Engine(EngineConfig(...)).generate(prompts, SamplingParams(...))`. For a server:
`AsyncEngine(engine)`, `start()`, then `async for event in stream(...)`.

Names load on first use (`precog --help` must not import torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.core import lazy_exports

if TYPE_CHECKING:
    from precog.backend.compress import KVCompression
    from precog.backend.config import EngineConfig
    from precog.backend.engine.async_engine import AsyncEngine, EngineShutdownError
    from precog.backend.engine.llm_engine import Engine
    from precog.backend.engine.request_check import RequestError
    from precog.backend.engine.sequence import Request
    from precog.backend.model.prepare import (
        MODELS,
        OfflineModel,
        PrepareError,
        default_model_dir,
        is_complete,
        prepare_model,
        prepared_model_dir,
    )
    from precog.backend.model.spec import UnsupportedModelError
    from precog.backend.outputs import (
        Completion,
        EngineStats,
        FinishReason,
        TokenEvent,
        TokenLogprob,
        TopLogprob,
    )
    from precog.backend.sampling_params import SamplingParams

_EXPORTS = {
    "KVCompression": "precog.backend.compress",
    "EngineConfig": "precog.backend.config",
    "AsyncEngine": "precog.backend.engine.async_engine",
    "EngineShutdownError": "precog.backend.engine.async_engine",
    "Engine": "precog.backend.engine.llm_engine",
    "RequestError": "precog.backend.engine.request_check",
    "Request": "precog.backend.engine.sequence",
    "MODELS": "precog.backend.model.prepare",
    "OfflineModel": "precog.backend.model.prepare",
    "PrepareError": "precog.backend.model.prepare",
    "default_model_dir": "precog.backend.model.prepare",
    "is_complete": "precog.backend.model.prepare",
    "prepare_model": "precog.backend.model.prepare",
    "prepared_model_dir": "precog.backend.model.prepare",
    "UnsupportedModelError": "precog.backend.model.spec",
    "Completion": "precog.backend.outputs",
    "EngineStats": "precog.backend.outputs",
    "FinishReason": "precog.backend.outputs",
    "TokenEvent": "precog.backend.outputs",
    "TokenLogprob": "precog.backend.outputs",
    "TopLogprob": "precog.backend.outputs",
    "SamplingParams": "precog.backend.sampling_params",
}

__all__ = [
    "MODELS",
    "AsyncEngine",
    "Completion",
    "Engine",
    "EngineConfig",
    "EngineShutdownError",
    "EngineStats",
    "FinishReason",
    "KVCompression",
    "OfflineModel",
    "PrepareError",
    "Request",
    "RequestError",
    "SamplingParams",
    "TokenEvent",
    "TokenLogprob",
    "TopLogprob",
    "UnsupportedModelError",
    "default_model_dir",
    "is_complete",
    "prepare_model",
    "prepared_model_dir",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
