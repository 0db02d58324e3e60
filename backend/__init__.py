"""The model server's engine: our Llama-family model over a paged KV cache with continuous batching.

In-process: `Engine(EngineConfig(...)).generate(prompts, SamplingParams(...))`. For a server:
`AsyncEngine(engine)`, `start()`, then `async for event in stream(...)`.

Names load on first use (`precog --help` must not import torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.lazy import lazy_exports

if TYPE_CHECKING:
    from backend.compress import KVCompression
    from backend.config import EngineConfig
    from backend.engine.async_engine import AsyncEngine, EngineShutdownError
    from backend.engine.llm_engine import Engine
    from backend.engine.sequence import Request
    from backend.model.prepare import (
        MODELS,
        OfflineModel,
        PrepareError,
        default_model_dir,
        is_complete,
        prepare_model,
        prepared_model_dir,
    )
    from backend.model.spec import UnsupportedModelError
    from backend.outputs import Completion, EngineStats, FinishReason, TokenEvent, TokenLogprob, TopLogprob
    from backend.sampling_params import SamplingParams

_EXPORTS = {
    "KVCompression": "backend.compress",
    "EngineConfig": "backend.config",
    "AsyncEngine": "backend.engine.async_engine",
    "EngineShutdownError": "backend.engine.async_engine",
    "Engine": "backend.engine.llm_engine",
    "Request": "backend.engine.sequence",
    "MODELS": "backend.model.prepare",
    "OfflineModel": "backend.model.prepare",
    "PrepareError": "backend.model.prepare",
    "default_model_dir": "backend.model.prepare",
    "is_complete": "backend.model.prepare",
    "prepare_model": "backend.model.prepare",
    "prepared_model_dir": "backend.model.prepare",
    "UnsupportedModelError": "backend.model.spec",
    "Completion": "backend.outputs",
    "EngineStats": "backend.outputs",
    "FinishReason": "backend.outputs",
    "TokenEvent": "backend.outputs",
    "TokenLogprob": "backend.outputs",
    "TopLogprob": "backend.outputs",
    "SamplingParams": "backend.sampling_params",
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
