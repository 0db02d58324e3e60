"""Our model server vs `transformers` generate, on the same prepared checkpoint and prompts, in one run.

- Throughput (output tokens/s) and time to first token at 1, 8 and 32 concurrent requests: ours through
  the real HTTP server (`precog backend serve` in its own process, streamed completions), HF one by one
  (requests queue) and HF padded-batched, in this process.
- TTFT of a request whose ~1K-token prefix is in the prefix cache vs the same-sized cold prompt.
- KV bytes per 1K tokens held at the 32-request peak: our paged blocks vs HF's padded batch cache.
- Greedy parity: our engine's 32 greedy tokens on 8 prompts against HF generate's, on the same device.

Writes bench/results/backend.json and prints a table.

    python bench/backend_bench.py [--max-tokens 32] [--levels 1,8,32] [--threads 2]
        [--device cpu|cuda] [--dtype float32|bfloat16] [--kv-dtype auto|int8|int4]
        [--attention-backend torch|kernels]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from precog.backend import prepared_model_dir

RESULTS = Path(__file__).parent / "results" / "backend.json"
PARITY_TOKENS = 32
DOCUMENT_FACTS = 64  # ~1K tokens of system prompt for the prefix-cache measurement
QUESTIONS = [
    "What is the capital of France?",
    "Why is the sky blue?",
    "How do bees make honey?",
    "What is a prime number?",
    "Explain photosynthesis briefly.",
    "Who wrote Hamlet?",
    "What causes the seasons on Earth?",
    "How does a rainbow form?",
    "What is the boiling point of water?",
    "Name three kinds of clouds.",
    "What does a compiler do?",
    "How far is the Moon from the Earth?",
    "Why do cats purr?",
    "What is gravity?",
    "How do vaccines work?",
    "What is the largest ocean?",
]
FACTS = [
    "The river crosses {n} bridges before it reaches the old harbour.",
    "In year {n} the town council opened a new library with a reading garden.",
    "Shop number {n} on the market square sells bread, cheese and honey.",
    "Bus line {n} runs every twenty minutes between the station and the hospital.",
]


@contextmanager
def serving(model_dir: Path, threads: int, max_num_seqs: int, engine: dict[str, str]) -> Iterator[str]:
    """`precog backend serve` in its own process, as deployed (engine: more PRECOG_ENGINE_ settings); the
    client side stays in this one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PRECOG_ENGINE_NUM_THREADS": str(threads), "PRECOG_BACKEND_LOG_LEVEL": "warning"}
    env |= {f"PRECOG_ENGINE_{name.upper()}": value for name, value in engine.items()}
    command = [sys.executable, "-m", "precog", "backend", "serve", "--port", str(port)]
    command += ["--model-dir", str(model_dir), "--max-num-seqs", str(max_num_seqs)]
    proc = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def metric(url: str, name: str) -> float:
    """One unlabelled sample of the server's Prometheus exposition."""
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return float(next(line for line in lines if line.startswith(name + " ")).split()[-1])


def chat_ids(tokenizer: Any, question: str, system: str | None = None) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


async def _stream(
    client: httpx.AsyncClient, model: str, ids: list[int], max_tokens: int
) -> tuple[float, int]:
    """One streamed completion: (seconds to the first chunk, completion tokens)."""
    body = {
        "model": model,
        "prompt": ids,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, first, usage = time.perf_counter(), None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            first = first or time.perf_counter()
            chunk = json.loads(line[6:])
            usage = chunk["usage"]["completion_tokens"] if chunk.get("usage") else usage
    if first is None or usage != max_tokens:
        raise RuntimeError(
            f"stream ended after {usage} of {max_tokens} tokens (status {response.status_code})"
        )
    return first - start, usage


async def _wave(url: str, model: str, prompts: list[list[int]], max_tokens: int) -> dict[str, Any]:
    """All prompts at once; also the most KV blocks the server held meanwhile (polled from /metrics)."""
    peak = 0.0

    async def watch(client: httpx.AsyncClient) -> None:
        nonlocal peak
        while True:
            lines = (await client.get("/metrics")).text.splitlines()
            used = next(line for line in lines if line.startswith("precog_backend_kv_blocks_used "))
            peak = max(peak, float(used.split()[-1]))
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        watcher = asyncio.create_task(watch(client))
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(client, model, ids, max_tokens) for ids in prompts))
        wall = time.perf_counter() - start
        watcher.cancel()
    return _row(wall, [r[0] for r in results], sum(r[1] for r in results)) | {"peak_kv_blocks": peak}


def _row(wall: float, ttfts: list[float], tokens: int) -> dict[str, Any]:
    return {
        "tokens_per_s": tokens / wall,
        "ttft_mean_s": statistics.mean(ttfts),
        "ttft_p50_s": statistics.median(ttfts),
        "wall_s": wall,
        "output_tokens": tokens,
    }


def kv_tokens_held(prompts: list[list[int]], max_tokens: int) -> int:
    """Tokens whose KV exists when a batch ends: each prompt and all but the last generated token."""
    return sum(len(p) + max_tokens - 1 for p in prompts)


class FirstTokenClock(LogitsProcessor):
    """Notes when generate first asks for logits processing: the first token is being chosen."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.first = self.first or time.perf_counter()
        return scores


def _hf_generate(model: Any, prompts: list[list[int]], max_tokens: int, pad_id: int) -> tuple[float, Any]:
    """One left-padded generate call; returns (time of its first token, output)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    clock = FirstTokenClock()
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            logits_processor=LogitsProcessorList([clock]),
            return_dict_in_generate=True,
        )
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    assert clock.first is not None
    return clock.first, out


def greedy_parity(
    model_dir: Path, hf: Any, prompts: list[list[int]], engine: dict[str, str]
) -> dict[str, Any]:
    """Our engine (in this process, same settings as the server) vs HF generate one by one, greedy: the
    share of output positions before the first different token, and of outputs equal throughout."""
    from precog.backend import Engine, EngineConfig, SamplingParams

    ours = Engine(EngineConfig(model_dir=model_dir, max_model_len=2048, num_kv_blocks=1024, **engine))
    params = SamplingParams(temperature=0.0, max_tokens=PARITY_TOKENS, ignore_eos=True)
    mine = [c.token_ids for c in ours.generate(prompts, params)]
    pad_id = hf.generation_config.eos_token_id
    pad_id = pad_id[0] if isinstance(pad_id, list) else pad_id
    theirs = [
        _hf_generate(hf, [p], PARITY_TOKENS, pad_id)[1].sequences[0, len(p) :].tolist() for p in prompts
    ]
    del ours
    before = [
        next((i for i, (a, b) in enumerate(zip(x, y, strict=True)) if a != b), PARITY_TOKENS)
        for x, y in zip(mine, theirs, strict=True)
    ]
    return {
        "prompts": len(prompts),
        "tokens": PARITY_TOKENS,
        "prefix_agreement": sum(before) / (PARITY_TOKENS * len(prompts)),
        "identical": sum(b == PARITY_TOKENS for b in before) / len(prompts),
    }


def hf_one_by_one(model: Any, prompts: list[list[int]], max_tokens: int, pad_id: int) -> dict[str, Any]:
    """Requests that arrive together but are served in turn: each one's TTFT includes its wait."""
    start, ttfts = time.perf_counter(), []
    for ids in prompts:
        first, _ = _hf_generate(model, [ids], max_tokens, pad_id)
        ttfts.append(first - start)
    return _row(time.perf_counter() - start, ttfts, len(prompts) * max_tokens)


def hf_batched(
    model: Any, prompts: list[list[int]], max_tokens: int, pad_id: int
) -> tuple[dict[str, Any], float]:
    """One padded batch; also returns its cache's bytes per 1K tokens actually held (prompt + output)."""
    start = time.perf_counter()
    first, out = _hf_generate(model, prompts, max_tokens, pad_id)
    row = _row(time.perf_counter() - start, [first - start] * len(prompts), len(prompts) * max_tokens)
    cache = out.cache
    cache_bytes = sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )
    return row, cache_bytes / kv_tokens_held(prompts, max_tokens) * 1000


async def prefix_ttft(url: str, model: str, tokenizer: Any, rounds: int) -> dict[str, float]:
    """TTFT with a ~1K-token document prefix that is cached (asked about before) vs cold (new document)."""
    cold, cached = [], []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for r in range(rounds):
            document = " ".join(FACTS[i % len(FACTS)].format(n=1000 * r + i) for i in range(DOCUMENT_FACTS))
            first = chat_ids(
                tokenizer, "Which bus line runs to the hospital?", system=f"Round {r}. {document}"
            )
            cold.append((await _stream(client, model, first, 1))[0])
            again = chat_ids(tokenizer, "Which shop sells honey?", system=f"Round {r}. {document}")
            cached.append((await _stream(client, model, again, 1))[0])
    return {
        "prefix_tokens": len(first),
        "cold_ttft_s": statistics.median(cold),
        "cached_ttft_s": statistics.median(cached),
        "cached_over_cold": statistics.median(cached) / statistics.median(cold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=32, help="output tokens per request (EOS ignored)")
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both (1: robust on shared cores)"
    )
    parser.add_argument("--prefix-rounds", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="both systems' device")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--kv-dtype", choices=("auto", "int8", "int4"), default="auto", help="ours only")
    parser.add_argument("--attention-backend", choices=("torch", "kernels"), default="torch")
    args = parser.parse_args()
    engine = {
        "device": args.device,
        "dtype": args.dtype,
        "kv_dtype": args.kv_dtype,
        "attention_backend": args.attention_backend,
    }
    levels = [int(x) for x in args.levels.split(",")]
    torch.set_num_threads(args.threads)
    model_dir = prepared_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [
        chat_ids(tokenizer, QUESTIONS[i % len(QUESTIONS)] + f" (request {i})") for i in range(max(levels))
    ]
    console = Console()

    results: dict[str, Any] = {"levels": {}, "config": vars(args)}
    with serving(model_dir, args.threads, max(levels), engine) as url:
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        results["config"]["model"] = model
        asyncio.run(_wave(url, model, prompts[:2], 4))  # warm-up
        for c in levels:
            console.log(f"ours: {c} concurrent")
            results["levels"][c] = {"ours": asyncio.run(_wave(url, model, prompts[:c], args.max_tokens))}
        console.log("ours: cached vs cold 1K-token prefix")
        results["prefix_cache"] = asyncio.run(prefix_ttft(url, model, tokenizer, args.prefix_rounds))
        block_bytes = metric(url, "precog_backend_kv_block_bytes")
        server_rss = metric(url, "process_resident_memory_bytes")
    top = results["levels"][max(levels)]["ours"]
    held = kv_tokens_held(prompts[: max(levels)], args.max_tokens)
    ours_kv_per_1k = top["peak_kv_blocks"] * block_bytes / held * 1000

    hf = (
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
        .to(args.device)
        .eval()
    )
    pad_id = hf.generation_config.eos_token_id
    pad_id = pad_id[0] if isinstance(pad_id, list) else pad_id
    _hf_generate(hf, prompts[:2], 4, pad_id)  # warm-up
    for c in levels:
        console.log(f"hf: {c} requests one by one, then batched")
        results["levels"][c]["hf_one_by_one"] = hf_one_by_one(hf, prompts[:c], args.max_tokens, pad_id)
        results["levels"][c]["hf_batched"], hf_kv_per_1k = hf_batched(
            hf, prompts[:c], args.max_tokens, pad_id
        )
    for row in results["levels"].values():
        row["speedup_vs_hf_one_by_one"] = row["ours"]["tokens_per_s"] / row["hf_one_by_one"]["tokens_per_s"]
        row["speedup_vs_hf_batched"] = row["ours"]["tokens_per_s"] / row["hf_batched"]["tokens_per_s"]
    results["greedy_parity_with_hf"] = greedy_parity(
        model_dir, hf, prompts[:8], engine | {"num_threads": args.threads}
    )
    results["kv_memory"] = {
        "ours_bytes_per_1k_tokens_at_peak": ours_kv_per_1k,
        "hf_batched_bytes_per_1k_tokens": hf_kv_per_1k,
        "server_rss_mb_after_runs": server_rss / 2**20,
        "hf_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    results["machine"] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    _print(console, results)


def _print(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="backend: ours vs transformers generate (same checkpoint, prompts and output length)")
    for column in ("concurrent", "system", "output tok/s", "TTFT mean s", "TTFT p50 s", "ours ÷ this"):
        table.add_column(column, justify="right")
    for c, row in results["levels"].items():
        for system in ("ours", "hf_one_by_one", "hf_batched"):
            r = row[system]
            ratio = "" if system == "ours" else f"{row['speedup_vs_' + system]:.2f}x"
            table.add_row(
                str(c),
                system,
                f"{r['tokens_per_s']:.1f}",
                f"{r['ttft_mean_s']:.3f}",
                f"{r['ttft_p50_s']:.3f}",
                ratio,
            )
    console.print(table)
    p = results["prefix_cache"]
    console.print(
        f"TTFT with a {p['prefix_tokens']}-token prompt: cold {p['cold_ttft_s']:.3f} s, prefix cached "
        f"{p['cached_ttft_s']:.3f} s ({p['cached_over_cold']:.1%} of cold; target <= 20%)"
    )
    g = results["greedy_parity_with_hf"]
    console.print(
        f"greedy parity with HF ({g['prompts']} prompts x {g['tokens']} tokens): "
        f"{g['prefix_agreement']:.1%} of positions before the first difference, "
        f"{g['identical']:.0%} identical"
    )
    m = results["kv_memory"]
    console.print(
        f"KV per 1K tokens held at the {max(results['levels'])}-request peak: ours "
        f"{m['ours_bytes_per_1k_tokens_at_peak'] / 2**20:.1f} MiB (paged, shared prefix blocks), HF padded "
        f"batch {m['hf_batched_bytes_per_1k_tokens'] / 2**20:.1f} MiB; server RSS "
        f"{m['server_rss_mb_after_runs']:.0f} MiB, HF process peak RSS {m['hf_process_peak_rss_mb']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
