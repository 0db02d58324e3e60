"""Attention and KV-cache kernels: each a Triton kernel beside the pure-torch reference it must match.

Every public op `name(...)` runs the Triton kernel on CUDA tensors (when triton is installed) and the
reference `name_ref(...)` otherwise; `backend="triton"` or `"torch"` forces one. Triton is imported
only when a kernel runs, so this package works on machines without it.
"""

from precog.kernels.attention_math import AttentionOutput, merge_attention
from precog.kernels.dispatch import Backend
from precog.kernels.expected_attention import expected_attention_scores, expected_attention_scores_ref
from precog.kernels.lowrank_attention import lowrank_attention, lowrank_attention_ref
from precog.kernels.paged_attention import paged_attention, paged_attention_ref
from precog.kernels.quant import (
    QuantizedTensor,
    dequantize,
    dequantize_ref,
    pack_codes,
    quantize,
    quantize_ref,
    unpack_codes,
)

__all__ = [
    "AttentionOutput",
    "Backend",
    "QuantizedTensor",
    "dequantize",
    "dequantize_ref",
    "expected_attention_scores",
    "expected_attention_scores_ref",
    "lowrank_attention",
    "lowrank_attention_ref",
    "merge_attention",
    "pack_codes",
    "paged_attention",
    "paged_attention_ref",
    "quantize",
    "quantize_ref",
    "unpack_codes",
]
