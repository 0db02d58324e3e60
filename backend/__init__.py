"""The model server's engine: our Llama-family model over a paged KV cache with continuous batching.

In-process: `Engine(EngineConfig(...)).generate(prompts, SamplingParams(...))`. For a server:
`AsyncEngine(engine)`, `start()`, then `async for event in stream(...)`.
"""

from backend.compress import KVCompression
from backend.config import EngineConfig
from backend.engine.async_engine import AsyncEngine, EngineShutdownError
from backend.engine.llm_engine import Engine
from backend.engine.sequence import Request
from backend.model.prepare import PrepareError, default_model_dir, prepare_model, prepared_model_dir
from backend.model.spec import UnsupportedModelError
from backend.outputs import Completion, EngineStats, FinishReason, TokenEvent, TokenLogprob, TopLogprob
from backend.sampling_params import SamplingParams

__all__ = [
    "AsyncEngine",
    "Completion",
    "Engine",
    "EngineConfig",
    "EngineShutdownError",
    "EngineStats",
    "FinishReason",
    "KVCompression",
    "PrepareError",
    "Request",
    "SamplingParams",
    "TokenEvent",
    "TokenLogprob",
    "TopLogprob",
    "UnsupportedModelError",
    "default_model_dir",
    "prepare_model",
    "prepared_model_dir",
]
