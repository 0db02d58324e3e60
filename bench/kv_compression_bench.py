"""KV-cache compression quality and memory: every press at ratios 0.25/0.5/0.75/0.9 vs the full cache.

On the real small model, each context is prefilled, compressed by the press, then fed the uncompressed
run's greedy continuation (teacher forcing), so every position's next-token distribution can be compared
with the uncompressed one: mean KL(full || compressed) and top-1 agreement. The first continuation
position is left out (its logits come from the prefill, before compression). KV held is measured in
the engine's block manager once every context of a run is prefilled and compressed, beside the same
figure for the full cache (the peer of this run).

Writes bench/results/kv_compression.json and prints a table.

    python bench/kv_compression_bench.py [--continuation 32] [--threads 2] [--with-kvpress]
        [--methods ojakv,snapkv] [--quick]

OjaKV keeps every token but stores the middle ones at a lower rank; its KV held adds the per-sequence
bases (2 · layers · KV heads · head_dim · rank floats each) to the blocks, so "÷ full" is effective bytes.

--with-kvpress then runs bench/kvpress_compare_bench.py: the same contexts side by side with NVIDIA's
kvpress (needs `make peers`).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import inspect
import io
import json
import platform
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from backend import Engine, EngineConfig, Request, SamplingParams
from backend.compress import OJAKV, PRESSES, KVCompression, rank_for_ratio

RESULTS = Path(__file__).parent / "results" / "kv_compression.json"
RATIOS = (0.25, 0.5, 0.75, 0.9)
COLOURS = ("red", "blue", "green", "amber", "violet", "teal", "silver", "orange")
NAMES = [
    "Alice",
    "Bob",
    "Carol",
    "Dan",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Karl",
    "Liam",
    "Mona",
    "Nina",
    "Oscar",
    "Peggy",
    "Quinn",
    "Rosa",
    "Sam",
    "Tina",
    "Uma",
    "Victor",
    "Wendy",
    "Xavier",
    "Yara",
    "Zoe",
]


def contexts() -> dict[str, tuple[str, str]]:
    """name -> (document, question): offline texts of a few hundred tokens each."""
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen of Python
        import this
    zen = codecs.decode(this.s, "rot13")
    facts = "\n".join(
        f"{n}'s favourite colour is {COLOURS[i * 5 % len(COLOURS)]}." for i, n in enumerate(NAMES)
    )
    code = inspect.getsource(textwrap.TextWrapper._wrap_chunks)
    return {
        "zen": (zen, "Which line of the text above is about namespaces? Quote it."),
        "facts": (facts, "What is Oscar's favourite colour?"),
        "code": (code, "Explain in two sentences what this function does."),
    }


def chat_ids(engine: Engine, document: str, question: str) -> list[int]:
    messages = [{"role": "user", "content": f"{document}\n\n{question}"}]
    text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(engine.tokenizer.encode(str(text)))


@dataclass
class Run:
    """One context under one compression setting: the logits of every continuation position."""

    ids: list[int]
    forced: list[int] | None
    logits: list[torch.Tensor] = field(default_factory=list)

    def greedy_tokens(self) -> list[int]:
        return [int(row.argmax()) for row in self.logits]


def run_all(engine: Engine, runs: list[Run], compression: KVCompression, length: int) -> tuple[int, float]:
    """Run every context under `compression` as one batch; return (KV blocks held once all are
    prefilled and compressed, wall seconds)."""
    params = SamplingParams(temperature=0.0, max_tokens=length, ignore_eos=True)
    for i, run in enumerate(runs):
        engine.submit(
            Request(
                f"kvbench-{compression.method}-{compression.ratio}-{i}",
                run.ids,
                params,
                forced_token_ids=run.forced,
                on_logits=run.logits.append,
                compression=compression,
            )
        )
    held = -1
    start = time.perf_counter()
    while engine.has_work():
        engine.step()
        if held < 0 and all(run.logits for run in runs):
            held = engine.stats().kv_blocks_used
    return held, time.perf_counter() - start


def compare(reference: list[Run], compressed: list[Run]) -> dict[str, float]:
    """Mean KL(full || compressed) in nats and top-1 agreement over continuation positions 1..L-1."""
    kls, agree = [], []
    for ref, comp in zip(reference, compressed, strict=True):
        p = torch.log_softmax(torch.stack(ref.logits[1:]).double(), dim=-1)
        q = torch.log_softmax(torch.stack(comp.logits[1:]).double(), dim=-1)
        kls.append((p.exp() * (p - q)).sum(dim=-1))
        agree.append((p.argmax(dim=-1) == q.argmax(dim=-1)).double())
    return {"kl_mean": float(torch.cat(kls).mean()), "top1_agreement": float(torch.cat(agree).mean())}


def basis_bytes(engine: Engine, method: str, ratio: float) -> int:
    """The per-sequence low-rank bases OjaKV holds beside its blocks (0 for eviction presses)."""
    if method != OJAKV:
        return 0
    spec = engine.spec
    return 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim * rank_for_ratio(ratio, spec.head_dim) * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--continuation", type=int, default=32, help="teacher-forced tokens per context")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--with-kvpress", action="store_true", help="then compare with kvpress")
    parser.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--quick", action="store_true", help="16 teacher-forced tokens per context")
    args = parser.parse_args()
    if args.quick:
        args.continuation = min(args.continuation, 16)
    methods = args.methods.split(",") if args.methods else [*PRESSES, OJAKV]
    console = Console()
    engine = Engine(
        EngineConfig(
            num_threads=args.threads, max_model_len=2048, num_kv_blocks=512, enable_prefix_caching=False
        )
    )
    texts = contexts()
    prompts = {name: chat_ids(engine, *pair) for name, pair in texts.items()}
    bytes_per_block = engine.spec.kv_bytes_per_token * engine.block_manager.block_size

    full = [Run(ids, None) for ids in prompts.values()]
    full_blocks, full_s = run_all(engine, full, KVCompression("none", 0.0), args.continuation)
    settings = [(method, ratio) for method in methods for ratio in RATIOS]
    rows = []
    for method, ratio in track(settings, description="presses x ratios", console=console):
        runs = [Run(ids, ref.greedy_tokens()) for ids, ref in zip(prompts.values(), full, strict=True)]
        blocks, seconds = run_all(engine, runs, KVCompression(method, ratio), args.continuation)
        held = blocks * bytes_per_block + len(runs) * basis_bytes(engine, method, ratio)
        rows.append(
            {
                "method": method,
                "ratio": ratio,
                **compare(full, runs),
                "kv_blocks_held": blocks,
                "kv_bytes_held": held,
                "kv_bytes_over_full": held / (full_blocks * bytes_per_block),
                "wall_s": seconds,
            }
        )
    results = {
        "contexts": {name: len(ids) for name, ids in prompts.items()},
        "continuation_tokens": args.continuation,
        "full_cache": {
            "kv_blocks_held": full_blocks,
            "kv_bytes_held": full_blocks * bytes_per_block,
            "wall_s": full_s,
        },
        "presses": rows,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    _print(console, results)
    if args.with_kvpress:
        compare_bench = str(Path(__file__).with_name("kvpress_compare_bench.py"))
        options = ["--continuation", str(args.continuation), "--threads", str(args.threads)]
        subprocess.run([sys.executable, compare_bench, *options], check=True)


def _print(console: Console, results: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"KV compression vs the full cache (contexts {results['contexts']} tokens, "
            f"{results['continuation_tokens']} teacher-forced tokens each)"
        )
    )
    for column in ("method", "ratio", "KL full||comp (nats)", "top-1 agree", "KV MiB held", "÷ full"):
        table.add_column(column, justify="right")
    full = results["full_cache"]
    table.add_row("full cache", "0", "0", "100.0%", f"{full['kv_bytes_held'] / 2**20:.2f}", "1.00x")
    for row in results["presses"]:
        table.add_row(
            row["method"],
            f"{row['ratio']:.2f}",
            f"{row['kl_mean']:.4f}",
            f"{row['top1_agreement']:.1%}",
            f"{row['kv_bytes_held'] / 2**20:.2f}",
            f"{row['kv_bytes_over_full']:.2f}x",
        )
    console.print(table)


if __name__ == "__main__":
    main()
