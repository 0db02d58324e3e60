"""RServe's overlap in our engine: prefill the ready part of a prompt while the rest is still produced.

A mixed load in one engine (in-process, AsyncEngine, continuous batching with chunked prefill):
- RAG turns: a system prompt and the earlier conversation (ready at once), then a retrieved document
  and the new question that arrive after a retrieval delay;
- plain chat turns, ready at once, interleaved with them (one arrival every --gap seconds);
- optionally one slow upload whose last part arrives only after several seconds.
The retrieval delay defaults to the measured prefill time of one ready prefix: overlap can save at most
min(delay, prefix prefill) per RAG turn, and only while the engine has spare capacity during the delay
(on a saturated machine, prefill done early only delays someone else).

Two runs on the same arrivals: "wait" submits a RAG turn once all of it is ready (what a server without
overlap must do); "overlap" submits the ready prefix at arrival and streams the rest in
(`AsyncEngine.stream(..., prompt_rest=...)`). Reported per class: TTFT from arrival (mean, p50, p99),
and for the whole run output tokens/s. Writes bench/results/overlap.json and prints a table.

    python bench/overlap_bench.py [--rag 8] [--plain 8] [--delay auto|SECONDS] [--gap SECONDS] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from precog.backend import AsyncEngine, Engine, EngineConfig, SamplingParams

RESULTS = Path(__file__).parent / "results" / "overlap.json"
TOPICS = [
    "the harbour",
    "the library",
    "the market",
    "the railway",
    "the old mill",
    "the museum",
    "the lighthouse",
    "the bakery",
    "the school",
    "the hospital",
    "the bridge",
    "the park",
]


@dataclass(frozen=True)
class Turn:
    """One request of the load: arrives at `at`, with `ready` tokens; `late` tokens follow `delay` later."""

    name: str
    kind: str
    ready: list[int]
    late: list[int]
    delay: float
    at: float = 0.0


def history(topic: str, turns: int) -> list[dict[str, str]]:
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"Tell me fact number {i} about {topic} in our town."})
        messages.append(
            {
                "role": "assistant",
                "content": f"Fact {i}: {topic} opened in year {1900 + 7 * i} "
                f"and has been rebuilt {i + 2} times since, most recently after a storm.",
            }
        )
    return messages


def split_turn(
    tokenizer: Any, ready_messages: list[dict[str, str]], late: str
) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat prompt, cut where the ready messages end."""
    full = tokenizer.apply_chat_template(
        [*ready_messages, {"role": "user", "content": late}], tokenize=False, add_generation_prompt=True
    )
    head = tokenizer.apply_chat_template(ready_messages, tokenize=False)
    ids = list(tokenizer.encode(full))
    head_ids = list(tokenizer.encode(head))
    cut = next((i for i, (a, b) in enumerate(zip(ids, head_ids, strict=False)) if a != b), len(head_ids))
    return ids[:cut], ids[cut:]


def build_load(
    tokenizer: Any, rag: int, plain: int, delay: float, history_turns: int, slow_upload: float
) -> list[Turn]:
    system = {"role": "system", "content": "You are the town's helpful guide. Answer briefly and kindly."}
    turns = []
    for i in range(rag):
        topic = TOPICS[i % len(TOPICS)]
        document = " ".join(
            f"Record {j}: {topic} hosted event {i * 10 + j} with {j + 20} visitors." for j in range(12)
        )
        ready, late = split_turn(
            tokenizer,
            [system, *history(topic, history_turns)],
            f"Document: {document}\nQuestion: how many visitors came to event {i * 10}?",
        )
        turns.append(Turn(f"rag-{i}", "rag", ready, late, delay))
    for i in range(plain):
        ids = list(
            tokenizer.encode(
                tokenizer.apply_chat_template(
                    [
                        system,
                        {
                            "role": "user",
                            "content": f"What should I see near {TOPICS[-1 - i % len(TOPICS)]}?",
                        },
                    ],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            )
        )
        turns.append(Turn(f"plain-{i}", "plain", ids, [], 0.0))
    if slow_upload:
        ready, late = split_turn(
            tokenizer, [system, *history("the ferry", history_turns)], "Summarise it all."
        )
        turns.append(Turn("upload", "slow upload", ready, late, slow_upload))
    return turns


async def run_turn(
    front: AsyncEngine, turn: Turn, overlap: bool, params: SamplingParams, run: str
) -> tuple[float, int]:
    """TTFT from arrival (seconds) and output tokens of one turn."""
    await asyncio.sleep(turn.at)
    arrival = time.perf_counter()

    async def rest() -> AsyncIterator[list[int]]:
        await asyncio.sleep(turn.delay)
        yield turn.late

    if turn.late and not overlap:
        await asyncio.sleep(turn.delay)
        stream = front.stream(f"{run}-{turn.name}", turn.ready + turn.late, params)
    elif turn.late:
        stream = front.stream(f"{run}-{turn.name}", turn.ready, params, prompt_rest=rest())
    else:
        stream = front.stream(f"{run}-{turn.name}", turn.ready, params)
    first, tokens = None, 0
    async for _ in stream:
        first = first or time.perf_counter() - arrival
        tokens += 1
    assert first is not None
    return first, tokens


async def run_load(
    front: AsyncEngine, turns: list[Turn], overlap: bool, max_tokens: int, run: str
) -> dict[str, Any]:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    start = time.perf_counter()
    results = await asyncio.gather(*(run_turn(front, t, overlap, params, run) for t in turns))
    wall = time.perf_counter() - start
    row: dict[str, Any] = {"wall_s": wall, "output_tok_s": sum(n for _, n in results) / wall}
    for kind in sorted({t.kind for t in turns}):
        ttfts = sorted(ttft for (ttft, _), t in zip(results, turns, strict=True) if t.kind == kind)
        row[kind] = {
            "n": len(ttfts),
            "ttft_mean_s": statistics.fmean(ttfts),
            "ttft_p50_s": ttfts[len(ttfts) // 2],
            "ttft_p99_s": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))],
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rag", type=int, default=8, help="RAG turns (ready prefix + late document)")
    parser.add_argument("--plain", type=int, default=8, help="plain chat turns, ready at once")
    parser.add_argument(
        "--delay",
        default="auto",
        help="retrieval delay of the late part, seconds (auto: one prefix's prefill time)",
    )
    parser.add_argument(
        "--gap", type=float, default=None, help="seconds between arrivals (default: the retrieval delay)"
    )
    parser.add_argument("--history", type=int, default=6, help="earlier turns in each RAG conversation")
    parser.add_argument(
        "--slow-upload", type=float, default=4.0, help="one upload finishing after this (0: none)"
    )
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 RAG + 4 plain turns, 3 earlier turns")
    args = parser.parse_args()
    if args.quick:
        args.rag, args.plain, args.history = 4, 4, 3

    engine = Engine(
        EngineConfig(
            num_threads=args.threads, max_model_len=2048, num_kv_blocks=1024, enable_prefix_caching=False
        )
    )
    turns = build_load(engine.tokenizer, args.rag, args.plain, 0.0, args.history, args.slow_upload)
    front = AsyncEngine(engine)
    front.start()
    try:
        asyncio.run(run_load(front, turns[:2], True, 2, "warmup"))
        if args.delay == "auto":
            started = time.perf_counter()
            engine.generate([turns[0].ready], SamplingParams(max_tokens=1))
            args.delay = round(time.perf_counter() - started, 2)
        gap = float(args.delay) if args.gap is None else args.gap
        order = sorted(turns, key=lambda t: int(t.name.rsplit("-", 1)[-1]) if "-" in t.name else len(turns))
        turns = [
            replace(t, delay=float(args.delay) if t.kind == "rag" else t.delay, at=i * gap)
            for i, t in enumerate(order)
        ]
        runs = {
            mode: asyncio.run(run_load(front, turns, mode == "overlap", args.max_tokens, mode))
            for mode in ("wait", "overlap")
        }
    finally:
        front.shutdown()
    ready = statistics.fmean(len(t.ready) for t in turns if t.kind == "rag")
    late = statistics.fmean(len(t.late) for t in turns if t.kind == "rag")
    results = {
        "config": {**vars(args), "rag_ready_tokens_mean": ready, "rag_late_tokens_mean": late},
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    runs = results["runs"]
    table = Table(title="Overlap (RServe): TTFT from arrival, seconds; same arrivals in both runs")
    for column in ("class", "run", "n", "ttft mean", "ttft p50", "ttft p99", "overlap / wait (mean)"):
        table.add_column(column)
    kinds = [k for k in runs["wait"] if isinstance(runs["wait"][k], dict)]
    for kind in kinds:
        for mode in ("wait", "overlap"):
            row = runs[mode][kind]
            ratio = row["ttft_mean_s"] / runs["wait"][kind]["ttft_mean_s"]
            table.add_row(
                kind,
                mode,
                str(row["n"]),
                f"{row['ttft_mean_s']:.3f}",
                f"{row['ttft_p50_s']:.3f}",
                f"{row['ttft_p99_s']:.3f}",
                f"{ratio:.2f}" if mode == "overlap" else "",
            )
    for mode in ("wait", "overlap"):
        table.add_row("all", mode, "", "", "", "", f"{runs[mode]['output_tok_s']:.1f} output tok/s")
    Console().print(table)
    config = results["config"]
    ready, late = config["rag_ready_tokens_mean"], config["rag_late_tokens_mean"]
    print(f"RAG prompts: {ready:.0f} ready + {late:.0f} late tokens, retrieval delay {config['delay']} s")


if __name__ == "__main__":
    main()
