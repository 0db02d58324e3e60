"""Packed KV pages: the bytes the engine's KV pool really holds per kv_dtype, and what it costs.

Each configuration runs in its own process: load the engine with a fixed pool (--blocks x 16 tokens),
fill every block with real prefills (distinct prompts of seeded random tokens, so no block is shared),
then read the process's resident memory (VmRSS; torch zeroes the pool as it allocates it, so it is
resident from the start) and the pool's storage bytes; "RSS − weights" takes off the parameters' storage
(bfloat16 halves the weights too). The float32 pool is the peer (what every page cost before packing).
The same process then runs 8 chat questions greedily (32 tokens, batched) for decode tokens/s and for
greedy agreement with the float32 run (share of positions before the first different token).

    python bench/kv_pages_bench.py [--blocks 1024] [--threads 2] [--device cpu|cuda]
Writes bench/results/kv_pages.json and prints a table. On cuda "RSS" is the GPU memory torch allocated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from precog.backend import Engine, EngineConfig, SamplingParams

RESULTS = Path(__file__).parent / "results" / "kv_pages.json"
CONFIGS = {
    "float32": {"dtype": "float32", "kv_dtype": "auto"},
    "bfloat16 pages": {"dtype": "bfloat16", "kv_dtype": "auto"},
    "int8 pages": {"dtype": "float32", "kv_dtype": "int8"},
    "int4 pages": {"dtype": "float32", "kv_dtype": "int4"},
}
QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in simple terms.",
    "How do I make a cup of tea?",
    "Describe the water cycle.",
    "What is machine learning?",
    "Why is the sky blue?",
    "How do vaccines work?",
    "What is a black hole?",
]
NEW_TOKENS = 32


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def filler_prompts(engine: Engine, tokens: int, size: int = 900) -> list[list[int]]:
    """Distinct prompts of seeded random token ids, `tokens` in all (content does not change the bytes)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, engine.spec.vocab_size - 1, (-(-tokens // size), size), generator=generator)
    return ids.tolist()


def device_bytes(device: str) -> int:
    """Bytes held where the pool lives: the process's resident memory, or the GPU memory torch allocated."""
    return torch.cuda.memory_allocated() if device == "cuda" else resident_bytes()


def run_one(name: str, blocks: int, threads: int, device: str) -> dict[str, object]:
    before = device_bytes(device)
    config = EngineConfig(
        num_kv_blocks=blocks,
        max_model_len=1024,
        num_threads=threads,
        max_num_seqs=32,
        device=device,
        **CONFIGS[name],
    )
    engine = Engine(config)
    loaded = device_bytes(device)
    fill = filler_prompts(engine, (blocks - 64) * config.block_size)
    for start in range(0, len(fill), 8):
        engine.generate(fill[start : start + 8], SamplingParams(max_tokens=1))
    filled = device_bytes(device)
    weights = sum(
        t.untyped_storage().nbytes() for t in {p.data_ptr(): p for p in engine.model.parameters()}.values()
    )
    prompts = [
        engine.tokenizer.encode(
            engine.tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
            )
        )
        for q in QUESTIONS
    ]
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    began = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - began
    return {
        "pool_bytes": engine.kv_cache.nbytes,
        "bytes_per_token": engine.kv_cache.bytes_per_block // config.block_size,
        "rss_before_engine": before,
        "rss_loaded": loaded,
        "rss_filled": filled,
        "weights_bytes": weights,
        "resident_less_weights": filled - before - weights,
        "tokens_per_s_batch8": len(prompts) * NEW_TOKENS / seconds,
        "greedy": [list(o.token_ids) for o in outputs],
    }


def agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    same = sum(
        next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        for a, b in zip(reference, other, strict=True)
    )
    return same / sum(len(a) for a in reference)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--one", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        torch.manual_seed(0)
        print(json.dumps(run_one(args.one, args.blocks, args.threads, args.device)))
        return
    rows: dict[str, dict] = {}
    for name in CONFIGS:
        command = [sys.executable, __file__, "--one", name, "--blocks", str(args.blocks)]
        command += ["--threads", str(args.threads), "--device", args.device]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
        print(f"{name}: done", flush=True)
    peer = rows["float32"]
    for row in rows.values():
        row["pool_ratio"] = row["pool_bytes"] / peer["pool_bytes"]
        row["resident_ratio"] = row["resident_less_weights"] / peer["resident_less_weights"]
        row["resident_saved"] = peer["rss_filled"] - row["rss_filled"]
        row["speed_ratio"] = row["tokens_per_s_batch8"] / peer["tokens_per_s_batch8"]
        row["greedy_agreement"] = agreement(peer["greedy"], row["greedy"])
    RESULTS.parent.mkdir(exist_ok=True)
    report = {"device": args.device, "blocks": args.blocks, "block_size": 16, "configs": rows}
    RESULTS.write_text(json.dumps(report, indent=2))
    table = Table(title=f"KV pool of {args.blocks} blocks x 16 tokens, filled ({args.device})")
    columns = (
        "pages",
        "B/token",
        "pool MB",
        "÷ fp32",
        "RSS MB",
        "RSS − weights MB",
        "÷ fp32",
        "RSS saved MB",
    )
    for column in (*columns, "tok/s b8", "÷ fp32"):
        table.add_column(column, justify="right")
    table.add_column("greedy agreement", justify="right")
    for name, row in rows.items():
        table.add_row(
            name,
            f"{row['bytes_per_token']:,}",
            f"{row['pool_bytes'] / 1e6:.1f}",
            f"{row['pool_ratio']:.3f}",
            f"{row['rss_filled'] / 1e6:.0f}",
            f"{row['resident_less_weights'] / 1e6:.0f}",
            f"{row['resident_ratio']:.3f}",
            f"{row['resident_saved'] / 1e6:.0f}",
            f"{row['tokens_per_s_batch8']:.1f}",
            f"{row['speed_ratio']:.2f}",
            f"{row['greedy_agreement']:.1%}",
        )
    Console(width=160).print(table)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
