"""Choose between a Triton kernel and its torch reference for one call.

Triton is an optional dependency (the `gpu`/`dev` extras), so nothing here imports it: the kernel
modules under `precog.kernels.triton_kernels` are imported only once this module says they will run.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]


@cache
def triton_installed() -> bool:
    """Whether the `triton` package can be imported here."""
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in {"1", "true", "yes", "on"}


def use_triton(backend: Backend, *tensors: torch.Tensor) -> bool:
    """True when the call should launch the Triton kernel.

    `auto` picks Triton for CUDA tensors when it is installed and the torch reference otherwise;
    `triton` forces the kernel (CPU tensors then need TRITON_INTERPRET=1, as in the tests);
    `torch` forces the reference.
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "torch":
        return False
    if backend == "auto":
        return on_cuda and triton_installed()
    if not triton_installed():
        raise RuntimeError("backend='triton' needs the triton package (pip install 'precog[gpu]')")
    if not on_cuda and not _interpreting():
        raise RuntimeError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton loads")
    return True
