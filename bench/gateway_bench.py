"""Gateway latency over real HTTP: the hit path at 1/16/64 concurrent clients, and what a miss costs.

Hit path: stored answers served by `precog gateway serve` (exact tier; semantic tier with every wording
embedded; semantic tier with recurring wordings, whose vectors the embedding cache keeps), p50/p99
latency and hits/s per concurrency. Targets on a 2-core machine: p50 under 15 ms, at least 150 hits/s at 16.

Miss overhead: time to first token of a streamed miss through the gateway vs straight to the same
upstream (the peer, measured in the same run, interleaved), with StorInfer's parallel path on and off.
Target: under 5 ms added at p50 with the parallel path.

KV next turn (with --kv-rounds > 0): the real backend behind the gateway; a stored exchange carries the
KV cache of its conversation, so after a hit the next turn is relayed with `kv_blob_id` and the backend
imports that KV instead of prefilling the long system prompt again. Peer: the same next turn over a
document of the same length that has no stored KV (cold prefill), in the same run.

The hit-path and miss upstream is a deterministic OpenAI-compatible server with a fixed time to first
token (default 50 ms, like a small prompt's prefill), so the differences measured are the gateway's; pass
--upstream-url to put a real server (our backend, vLLM) behind the gateway instead.

    .venv/bin/python bench/gateway_bench.py [--requests 300] [--upstream-ttft-ms 50] [--kv-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from precog.shell.up import wait_healthy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gateway.json"
MODEL = "test-model"
TOPICS = [
    "the Eiffel Tower",
    "photosynthesis",
    "the French Revolution",
    "black holes",
    "the Great Wall of China",
    "the human heart",
    "volcanoes",
    "the Roman Empire",
    "DNA replication",
    "the Amazon rainforest",
    "plate tectonics",
    "the Moon landing",
    "jazz music",
    "the stock market",
    "climate change",
    "the printing press",
    "honey bees",
    "the Pacific Ocean",
    "quantum computing",
    "the Renaissance",
]
QUESTIONS = [f"Can you explain {topic} to me?" for topic in TOPICS]
REWORDED = [f"Could you explain {topic} to me?" for topic in TOPICS]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _process(cmd: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(ready_url, proc, timeout=180.0)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def fake_upstream(ttft_ms: float) -> Iterator[str]:
    port = _free_port()
    code = (
        "import uvicorn; from tests.gateway.fake_upstream import UpstreamState, create_upstream; "
        f"uvicorn.run(create_upstream(UpstreamState(delay_s={ttft_ms / 1000.0})), host='127.0.0.1', "
        f"port={port}, log_level='warning')"
    )
    url = f"http://127.0.0.1:{port}"
    with _process([sys.executable, "-c", code], f"{url}/v1/models"):
        yield url


@contextmanager
def upstream_server(url: str | None, ttft_ms: float) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    with fake_upstream(ttft_ms) as started:
        yield started


@contextmanager
def gateway(upstream: str, store: Path, parallel: bool = True, embed_cache: bool = True) -> Iterator[str]:
    port = _free_port()
    env = {
        "PRECOG_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
        "PRECOG_GATEWAY_PARALLEL_PATH": str(parallel).lower(),
        "PRECOG_GATEWAY_EMBED_CACHE_SIZE": "10000" if embed_cache else "0",
        "PRECOG_GATEWAY_LOG_LEVEL": "warning",
    }
    cmd = [
        sys.executable,
        "-m",
        "precog",
        "gateway",
        "serve",
        "--port",
        str(port),
        "--upstream-url",
        upstream,
        "--store-path",
        str(store),
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(cmd, f"{url}/readyz", env):
        yield url


def _chat(question: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "stream": stream,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _seed(url: str) -> None:
    """Ask every question once (misses, written back), then check each is served from storage."""
    async with httpx.AsyncClient(timeout=60) as client:
        for question in QUESTIONS:
            (await client.post(f"{url}/v1/chat/completions", json=_chat(question))).raise_for_status()
        for _ in range(100):
            listed = (await client.get(f"{url}/admin/entries", params={"limit": 1000})).json()["entries"]
            if len(listed) >= len(QUESTIONS):
                return
            await asyncio.sleep(0.1)
    raise SystemExit("write-back did not store the seed answers")


async def _hit_load(url: str, questions: list[str], clients: int, total: int) -> dict[str, Any]:
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker(offset: int) -> None:
            for i in range(offset, total, clients):
                started = time.perf_counter()
                response = await client.post(
                    f"{url}/v1/chat/completions", json=_chat(questions[i % len(questions)])
                )
                latencies.append((time.perf_counter() - started) * 1000)
                outcome = response.headers.get("x-precog-cache", str(response.status_code))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        for question in questions[:4]:  # warm the connection pool's first connection
            await client.post(f"{url}/v1/chat/completions", json=_chat(question))
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "per_s": round(len(latencies) / elapsed, 1),
        "hit_share": round(outcomes.get("hit", 0) / len(latencies), 3),
    }


def _first_content(line: str) -> bool:
    """An SSE line that carries answer text (not the role-only first chunk some servers send at once)."""
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[6:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content") or choices[0].get("text"))


async def _ttft(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    """Milliseconds from sending a streamed request to its first piece of answer text."""
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if _first_content(line):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError(f"stream from {url} ended without content")


async def _miss_overhead(upstream: str, gateways: dict[str, str], rounds: int) -> dict[str, Any]:
    """Interleaved: each round asks a fresh question straight to the upstream and through each gateway."""
    samples: dict[str, list[float]] = {"direct": [], **{name: [] for name in gateways}}
    async with httpx.AsyncClient(timeout=60) as client:
        for i in tqdm(range(rounds), desc="miss TTFT", unit="round"):
            samples["direct"].append(
                await _ttft(client, upstream, _chat(f"direct question {i}?", stream=True))
            )
            for name, url in gateways.items():
                samples[name].append(
                    await _ttft(client, url, _chat(f"{name} miss question {i}?", stream=True))
                )
    result: dict[str, Any] = {}
    direct_p50 = statistics.median(samples["direct"])
    for name, values in samples.items():
        result[name] = {"p50_ms": _pct(values, 0.5), "p99_ms": _pct(values, 0.99)}
        if name != "direct":
            result[name]["added_p50_ms"] = round(statistics.median(values) - direct_p50, 2)
    return result


BACKEND_MODEL = "smollm2-135m-instruct"
SUMMARY_QUESTION = "What is this text about, in one sentence?"
FOLLOW_UP = "Which detail of the text is the most surprising?"


def _document(seed: int, sentences: int = 40) -> str:
    """A long, unique system prompt: its prefill is what the stored KV saves."""
    topics = TOPICS[seed % len(TOPICS) :] + TOPICS[: seed % len(TOPICS)]
    return " ".join(
        f"Note {seed}.{i}: {topics[i % len(topics)]} was discussed on day {seed * 97 + i} of the survey."
        for i in range(sentences)
    )


def _conversation(doc: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": doc},
        {"role": "user", "content": SUMMARY_QUESTION},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": FOLLOW_UP},
    ]


def _seed_kv_entries(backend: str, store_path: Path, docs: list[str]) -> list[str]:
    """Answer each document's first question on the backend, export the conversation's KV, store both."""
    from precog.store import Embedder, Entry, KVBlob, Store, scope_key

    embedder = Embedder()
    answers = []
    with (
        httpx.Client(base_url=backend, timeout=300) as client,
        Store.open(store_path, progress=False) as store,
    ):
        for doc in tqdm(docs, desc="seed KV entries", unit="doc"):
            messages = [{"role": "system", "content": doc}, {"role": "user", "content": SUMMARY_QUESTION}]
            reply = client.post(
                "/v1/chat/completions",
                json={"model": BACKEND_MODEL, "messages": messages, "temperature": 0, "max_tokens": 24},
            )
            reply.raise_for_status()
            answer = reply.json()["choices"][0]["message"]["content"]
            exported = client.post(
                "/v1/kv/export",
                json={
                    "messages": [*messages, {"role": "assistant", "content": answer}],
                    "add_generation_prompt": False,
                },
            )
            exported.raise_for_status()
            store.put(
                Entry(
                    scope=scope_key(BACKEND_MODEL, doc, "default"),
                    query=SUMMARY_QUESTION,
                    answer=answer,
                    embedding=embedder.encode([SUMMARY_QUESTION])[0],
                    model=BACKEND_MODEL,
                ),
                KVBlob.from_bytes(exported.content),
            )
            answers.append(answer)
    return answers


async def _kv_next_turn(
    url: str, docs: list[str], cold_docs: list[str], answers: list[str]
) -> dict[str, Any]:
    """Per round: hit the stored first turn, then time the follow-up (KV imported) and a cold twin."""
    with_kv: list[float] = []
    cold: list[float] = []
    samples_by_round = []
    async with httpx.AsyncClient(timeout=300) as client:
        for doc, cold_doc, answer in zip(docs, cold_docs, answers, strict=True):
            first = [{"role": "system", "content": doc}, {"role": "user", "content": SUMMARY_QUESTION}]
            hit = await client.post(
                f"{url}/v1/chat/completions",
                json={"model": BACKEND_MODEL, "messages": first, "temperature": 0, "max_tokens": 24},
            )
            if hit.headers.get("x-precog-cache") != "hit":
                raise SystemExit(
                    f"seeded first turn was not a hit: {hit.headers.get('x-precog-cache-reason')}"
                )
            for conversation, samples in (
                (_conversation(doc, answer), with_kv),
                (_conversation(cold_doc, answer), cold),
            ):
                body = {
                    "model": BACKEND_MODEL,
                    "messages": conversation,
                    "temperature": 0,
                    "max_tokens": 8,
                    "stream": True,
                }
                samples.append(await _ttft(client, url, body))
            samples_by_round.append({"with_kv_ms": round(with_kv[-1], 1), "cold_ms": round(cold[-1], 1)})
    with_kv, cold = with_kv[1:], cold[1:]  # the first round opens the backend's store and warms its caches
    return {
        "rounds": len(docs) - 1,
        "samples": samples_by_round,
        "ttft_with_stored_kv_p50_ms": _pct(with_kv, 0.5),
        "ttft_cold_prefill_p50_ms": _pct(cold, 0.5),
        "saved_p50_ms": round(statistics.median(cold) - statistics.median(with_kv), 1),
        "speedup": round(statistics.median(cold) / statistics.median(with_kv), 2),
    }


def kv_section(rounds: int) -> dict[str, Any]:
    docs = [_document(i) for i in range(rounds + 1)]
    cold_docs = [_document(1000 + i) for i in range(rounds + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        backend_port = _free_port()
        backend = f"http://127.0.0.1:{backend_port}"
        cmd = [
            sys.executable,
            "-m",
            "precog",
            "backend",
            "serve",
            "--port",
            str(backend_port),
            "--store-path",
            str(store_path),
        ]
        with _process(cmd, f"{backend}/healthz"):
            answers = _seed_kv_entries(backend, store_path, docs)
            with gateway(backend, store_path, parallel=True) as url:
                return asyncio.run(_kv_next_turn(url, docs, cold_docs, answers))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="hit requests per concurrency level")
    parser.add_argument("--miss-rounds", type=int, default=60)
    parser.add_argument("--upstream-ttft-ms", type=float, default=50.0)
    parser.add_argument(
        "--kv-rounds", type=int, default=3, help="KV next-turn rounds on the real backend (0: skip)"
    )
    parser.add_argument(
        "--upstream-url",
        default=None,
        help="a real OpenAI-compatible upstream serving "
        f"model {MODEL!r}; default: the deterministic test upstream",
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        upstream_server(args.upstream_url, args.upstream_ttft_ms) as upstream,
        gateway(upstream, Path(tmp) / "store") as url,
        gateway(upstream, Path(tmp) / "store-uncached", embed_cache=False) as uncached_url,
        gateway(upstream, Path(tmp) / "store-serial", parallel=False) as serial_url,
    ):
        asyncio.run(_seed(url))
        asyncio.run(_seed(uncached_url))
        # semantic: every request embeds its wording (cache off); semantic, repeated wording: the
        # wordings recur, as popular questions do, and their vectors come from the embedding cache.
        levels = {
            "exact": (url, QUESTIONS),
            "semantic": (uncached_url, REWORDED),
            "semantic, repeated wording": (url, REWORDED),
        }
        hits: dict[str, list[dict[str, Any]]] = {tier: [] for tier in levels}
        for tier, (target, questions) in levels.items():
            for clients in tqdm((1, 16, 64), desc=f"{tier} hits", unit="level"):
                hits[tier].append(asyncio.run(_hit_load(target, questions, clients, args.requests)))
        misses = asyncio.run(
            _miss_overhead(upstream, {"parallel": url, "serial": serial_url}, args.miss_rounds)
        )

    kv = kv_section(args.kv_rounds) if args.kv_rounds > 0 else None
    report = {
        "upstream": args.upstream_url or f"deterministic test upstream, TTFT {args.upstream_ttft_ms} ms",
        "hits": hits,
        "miss_ttft": misses,
        "kv_next_turn": kv,
        "targets": {
            "hit_p50_under_15ms": all(r["p50_ms"] < 15 for r in hits["exact"] if r["clients"] == 1),
            "hits_per_s_at_16_at_least_150": next(r["per_s"] for r in hits["exact"] if r["clients"] == 16)
            >= 150,
            "miss_added_p50_under_5ms": misses["parallel"]["added_p50_ms"] < 5,
        },
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    _print(report)


def _print(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="gateway hit path (HTTP, non-streaming)")
    for column in ("tier", "clients", "p50 ms", "p99 ms", "hits/s", "hit share"):
        table.add_column(column, justify="right")
    for tier, rows in report["hits"].items():
        for r in rows:
            table.add_row(
                tier,
                str(r["clients"]),
                str(r["p50_ms"]),
                str(r["p99_ms"]),
                str(r["per_s"]),
                str(r["hit_share"]),
            )
    console.print(table)
    misses = Table(title=f"miss: time to first token ({report['upstream']})")
    for column in ("path", "p50 ms", "p99 ms", "added p50 ms vs direct"):
        misses.add_column(column, justify="right")
    for name, r in report["miss_ttft"].items():
        misses.add_row(name, str(r["p50_ms"]), str(r["p99_ms"]), str(r.get("added_p50_ms", "—")))
    console.print(misses)
    if report["kv_next_turn"]:
        kv = report["kv_next_turn"]
        table = Table(title="next turn after a hit, real backend: TTFT with the stored KV vs cold prefill")
        for column in ("rounds", "with stored KV p50 ms", "cold prefill p50 ms", "saved ms", "speed-up"):
            table.add_column(column, justify="right")
        table.add_row(
            str(kv["rounds"]),
            str(kv["ttft_with_stored_kv_p50_ms"]),
            str(kv["ttft_cold_prefill_p50_ms"]),
            str(kv["saved_p50_ms"]),
            f"{kv['speedup']}x",
        )
        console.print(table)
    console.print({k: ("met" if v else "missed") for k, v in report["targets"].items()})


if __name__ == "__main__":
    main()
