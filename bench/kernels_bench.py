"""Time each kernel against its torch reference (and paged attention against dense SDPA over gathered KV).

On a CUDA machine with triton this times the Triton kernels, the references and the SDPA peer on
SmolLM2-sized shapes (9 query / 3 KV heads, head_dim 64, 16-token pages) and checks they agree; on a
CPU it times only the references, at smaller sizes. Writes bench/results/kernels.json and prints a table.

    python bench/kernels_bench.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from precog import kernels
from precog.kernels.dispatch import triton_installed

RESULTS = Path(__file__).parent / "results" / "kernels.json"
NUM_Q_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK_SIZE = 9, 3, 64, 16


def _time_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` in milliseconds, after warm-up (which also compiles Triton kernels)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _paged_inputs(num_seqs: int, context: int, dim: int, device: torch.device, dtype: torch.dtype):
    pages_per_seq = -(-context // BLOCK_SIZE)
    num_blocks = num_seqs * pages_per_seq
    k_cache = torch.randn(num_blocks, BLOCK_SIZE, NUM_KV_HEADS, dim, device=device, dtype=dtype)
    v_cache = torch.randn_like(k_cache)
    tables = torch.randperm(num_blocks, device=device).view(num_seqs, pages_per_seq).to(torch.int32)
    lens = torch.full((num_seqs,), context, dtype=torch.int32, device=device)
    return k_cache, v_cache, tables, lens


def _sdpa_over_gathered(q, k_cache, v_cache, tables, lens) -> torch.Tensor:
    """The dense peer: copy every sequence's pages into contiguous KV, then torch's fused attention."""
    num_seqs, context = tables.shape[0], int(lens.max())
    keys = k_cache[tables.long()].reshape(num_seqs, -1, NUM_KV_HEADS, HEAD_DIM)[:, :context].transpose(1, 2)
    values = v_cache[tables.long()].reshape(num_seqs, -1, NUM_KV_HEADS, HEAD_DIM)[:, :context].transpose(1, 2)
    return F.scaled_dot_product_attention(q[:, :, None, :], keys, values, enable_gqa=True)[:, :, 0]


def _measure(
    name: str,
    shape: str,
    reference: Callable[[], Any],
    kernel: Callable[[], Any],
    device: torch.device,
    repeats: int,
    with_kernel: bool,
    peer: tuple[str, Callable[[], Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row: the reference's time, and on a GPU the kernel's, its speed-up and its disagreement."""
    row: dict[str, Any] = {"op": name, "shape": shape, "reference_ms": _time_ms(reference, device, repeats)}
    if with_kernel:
        row["triton_ms"] = _time_ms(kernel, device, repeats)
        row["speedup_vs_reference"] = row["reference_ms"] / row["triton_ms"]
        row["max_abs_diff_vs_reference"] = _max_abs_diff(kernel(), reference())
    if peer is not None:
        row[f"{peer[0]}_ms"] = _time_ms(peer[1], device, repeats)
        fastest_ours = row.get("triton_ms", row["reference_ms"])
        row[f"speedup_vs_{peer[0]}"] = row[f"{peer[0]}_ms"] / fastest_ours
    row.update(extra or {})
    return row


def _max_abs_diff(kernel_result: Any, reference_result: Any) -> float:
    if isinstance(kernel_result, kernels.AttentionOutput):
        kernel_result, reference_result = kernel_result.out, reference_result.out
    if isinstance(kernel_result, kernels.QuantizedTensor):
        kernel_result, reference_result = (
            kernels.dequantize_ref(kernel_result),
            kernels.dequantize_ref(reference_result),
        )
    return float((kernel_result.float() - reference_result.float()).abs().max())


def run(device: torch.device, repeats: int) -> list[dict[str, Any]]:
    on_gpu = device.type == "cuda" and triton_installed()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    num_seqs, context = (32, 2048) if on_gpu else (4, 512)
    rows = []

    k_cache, v_cache, tables, lens = _paged_inputs(num_seqs, context, HEAD_DIM, device, dtype)
    q = torch.randn(num_seqs, NUM_Q_HEADS, HEAD_DIM, device=device, dtype=dtype)
    paged_args = (q, k_cache, v_cache, tables, lens)
    rows.append(
        _measure(
            "paged_attention",
            f"{num_seqs} seqs x {context} tokens",
            partial(kernels.paged_attention_ref, *paged_args),
            partial(kernels.paged_attention, *paged_args, backend="triton"),
            device,
            repeats,
            on_gpu,
            peer=("sdpa_gathered", partial(_sdpa_over_gathered, *paged_args)),
        )
    )

    for rank in (16, 32):
        ck, cv, ltables, llens = _paged_inputs(num_seqs, context, rank, device, dtype)
        basis = torch.linalg.qr(torch.randn(num_seqs, NUM_KV_HEADS, HEAD_DIM, rank, device=device)).Q
        low_args = (q, ck, cv, basis, basis, ltables, llens)
        rows.append(
            _measure(
                "lowrank_attention",
                f"rank {rank}, {num_seqs} seqs x {context} tokens",
                partial(kernels.lowrank_attention_ref, *low_args),
                partial(kernels.lowrank_attention, *low_args, backend="triton"),
                device,
                repeats,
                on_gpu,
                peer=("full_rank_paged", partial(kernels.paged_attention, *paged_args)),
                extra={"kv_bytes_vs_full_rank": rank / HEAD_DIM},
            )
        )

    vectors = num_seqs * context * NUM_KV_HEADS
    x = torch.randn(vectors, HEAD_DIM, device=device, dtype=dtype)
    for bits in (2, 4, 8):
        quantized = kernels.quantize_ref(x, bits, 32)
        shape = f"{vectors} x {HEAD_DIM}, groups of 32"
        rows.append(
            _measure(
                f"quantize_{bits}bit",
                shape,
                partial(kernels.quantize_ref, x, bits, 32),
                partial(kernels.quantize, x, bits, 32, backend="triton"),
                device,
                repeats,
                on_gpu,
                extra={"bits_per_value_with_metadata": 8 * quantized.nbytes / x.numel()},
            )
        )
        rows.append(
            _measure(
                f"dequantize_{bits}bit",
                shape,
                partial(kernels.dequantize_ref, quantized, dtype),
                partial(kernels.dequantize, quantized, dtype, backend="triton"),
                device,
                repeats,
                on_gpu,
            )
        )

    prompt = 8192 if on_gpu else 1024
    keys = torch.randn(1, NUM_KV_HEADS, prompt, HEAD_DIM, device=device, dtype=dtype)
    values = torch.randn_like(keys)
    mean = torch.randn(1, NUM_Q_HEADS, HEAD_DIM, device=device)
    spread = torch.randn(1, NUM_Q_HEADS, HEAD_DIM, HEAD_DIM, device=device)
    cov = spread @ spread.transpose(-1, -2) / HEAD_DIM
    ea_args = (keys, values, mean, cov)
    rows.append(
        _measure(
            "expected_attention_scores",
            f"{prompt} tokens, with covariance",
            partial(kernels.expected_attention_scores_ref, *ea_args),
            partial(kernels.expected_attention_scores, *ea_args, backend="triton"),
            device,
            repeats,
            on_gpu,
        )
    )
    return rows


def _print_table(rows: list[dict[str, Any]], device_name: str) -> None:
    table = Table(title=f"kernels on {device_name}")
    for column in ("op", "shape", "reference ms", "triton ms", "x vs ref", "peer ms", "x vs peer"):
        table.add_column(column)
    for row in rows:
        peer = next((k for k in row if k.endswith("_ms") and k not in ("reference_ms", "triton_ms")), None)
        table.add_row(
            row["op"],
            row["shape"],
            f"{row['reference_ms']:.3f}",
            f"{row['triton_ms']:.3f}" if "triton_ms" in row else "-",
            f"{row['speedup_vs_reference']:.2f}" if "speedup_vs_reference" in row else "-",
            f"{peer[:-3]} {row[peer]:.3f}" if peer else "-",
            f"{row['speedup_vs_' + peer[:-3]]:.2f}" if peer else "-",
        )
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    rows = run(device, args.repeats)
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "device": device_name,
        "triton": triton_installed() and device.type == "cuda",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "results": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(rows, device_name)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
