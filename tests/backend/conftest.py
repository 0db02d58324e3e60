"""One engine per test session over the prepared SmolLM2 checkpoint (the server tests reuse it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import Engine, EngineConfig, prepared_model_dir

# Sized for the tests: 512 blocks x 16 tokens = 8K tokens of KV (~370 MB), contexts up to 1K tokens.
TEST_ENGINE = {"max_model_len": 1024, "num_kv_blocks": 512, "max_num_seqs": 32, "max_num_batched_tokens": 512}


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return prepared_model_dir()


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Engine:
    # One thread: the test machine's cores are shared, and spinning OpenMP threads then cost far more.
    return Engine(EngineConfig(model_dir=model_dir, num_threads=1, **TEST_ENGINE))
