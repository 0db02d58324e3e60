"""Kernel tests run the Triton kernels on CUDA when present, else on the CPU through Triton's interpreter.

TRITON_INTERPRET must be set before triton is first imported, so it is set here, at collection time,
ahead of any test module (kernels imports triton only when a kernel runs).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def triton_available() -> None:
    pytest.importorskip("triton")


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
