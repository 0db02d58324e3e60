"""KV-cache compression quality and memory: every press at ratios 0.25/0.5/0.75/0.9 vs the full cache.

On the real small model, each context is prefilled, compressed by the press, then fed the uncompressed
run's greedy continuation (teacher forcing), so every position's next-token distribution can be compared
with the uncompressed one: mean KL(full || compressed) and top-1 agreement. The first continuation
position is left out (its logits come from the prefill, before compression). KV held is measured in
the engine's block manager once every context of a run is prefilled and compressed, beside the same
figure for the full cache (the peer of this run).

Beside it (bench/kv_quality/): passkey retrieval at the longest context the bench engine allows (2,000
tokens; the key at depths 0.1/0.5/0.9), multi-instruction following with and without the Pitfalls
protection of the system prompt and a marked user instruction, and, for the passkey runs, the KV bytes
held once every prompt is prefilled and compressed and the decode tokens/s, each against the full
cache in the same run. Every method of precog.backend.compress.METHODS is run.

Writes bench/results/kv_compression.json and prints tables.

    python bench/kv_compression_bench.py [--quick] [--sections kl passkey instructions]
        [--methods ojakv,snapkv] [--continuation 32] [--passkey-tokens 2000] [--threads 2] [--with-kvpress]

--quick: 16 teacher-forced tokens, one 512-token passkey prompt, two short instruction prompts.

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
from kv_quality import followed, instruction_cases, passkey_cases, retrieved, run_batch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.compress import METHODS, OJAKV, KVCompression, rank_for_ratio

RESULTS = Path(__file__).parent / "results" / "kv_compression.json"
RATIOS = (0.25, 0.5, 0.75, 0.9)
SECTIONS = ("kl", "passkey", "instructions")
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


def kl_section(
    engine: Engine, settings: list[tuple[str, float]], continuation: int, console: Console
) -> dict:
    """Next-token KL and top-1 agreement under teacher forcing on the offline contexts; KV held."""
    prompts = {name: chat_ids(engine, *pair) for name, pair in contexts().items()}
    bytes_per_block = engine.kv_cache.bytes_per_block
    full = [Run(ids, None) for ids in prompts.values()]
    full_blocks, full_s = run_all(engine, full, KVCompression("none", 0.0), continuation)
    rows = []
    for method, ratio in track(settings, description="KL: methods x ratios", console=console):
        runs = [Run(ids, ref.greedy_tokens()) for ids, ref in zip(prompts.values(), full, strict=True)]
        blocks, seconds = run_all(engine, runs, KVCompression(method, ratio), continuation)
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
    return {
        "contexts": {name: len(ids) for name, ids in prompts.items()},
        "continuation_tokens": continuation,
        "full_cache": {
            "kv_blocks_held": full_blocks,
            "kv_bytes_held": full_blocks * bytes_per_block,
            "wall_s": full_s,
        },
        "presses": rows,
    }


def passkey_section(
    engine: Engine, settings: list[tuple[str, float]], num_tokens: int, depths: list[float], console: Console
) -> dict:
    """Passkey accuracy at the longest context, with the KV bytes held and decode tokens/s of each run."""
    cases = passkey_cases(engine.tokenizer, num_tokens, depths)
    prompts = [case.token_ids for case in cases]
    bytes_per_block = engine.kv_cache.bytes_per_block

    def run(method: str, ratio: float) -> dict[str, Any]:
        result = run_batch(
            engine, prompts, [KVCompression(method, ratio)] * len(prompts), 8, f"passkey-{method}-{ratio}"
        )
        hits = [retrieved(text, case) for text, case in zip(result.texts, cases, strict=True)]
        return {
            "method": method,
            "ratio": ratio,
            "accuracy": sum(hits) / len(hits),
            "answers": result.texts,
            "kv_blocks_held": result.kv_blocks_held,
            "kv_bytes_held": result.kv_blocks_held * bytes_per_block
            + len(prompts) * basis_bytes(engine, method, ratio),
            "decode_tokens_per_s": result.decode_tokens_per_s,
        }

    full = run("none", 0.0)
    rows = [run(m, r) for m, r in track(settings, description="passkey: methods x ratios", console=console)]
    return {
        "prompt_tokens": [len(p) for p in prompts],
        "depths": depths,
        "keys": [case.key for case in cases],
        "full_cache": full,
        "presses": rows,
    }


def instructions_section(
    engine: Engine, settings: list[tuple[str, float]], document_tokens: int, count: int, console: Console
) -> dict:
    """Share of instructions followed (system prompt and a marked user instruction), protected or not."""
    cases = instruction_cases(engine.tokenizer, document_tokens, count)
    prompts = [case.prompt.token_ids for case in cases]

    def run(compressions: list[KVCompression], tag: str) -> dict[str, Any]:
        result = run_batch(engine, prompts, compressions, 32, tag, ignore_eos=False)
        checks = [followed(text, case) for text, case in zip(result.texts, cases, strict=True)]
        per_instruction = {name: sum(c[name] for c in checks) / len(checks) for name in checks[0]}
        return {
            "followed": sum(sum(c.values()) for c in checks) / sum(len(c) for c in checks),
            "per_instruction": per_instruction,
            "answers": result.texts,
        }

    full = run([KVCompression("none", 0.0)] * len(cases), "instructions-full")
    rows = []
    for method, ratio in track(settings, description="instructions: methods x ratios", console=console):
        row: dict[str, Any] = {"method": method, "ratio": ratio}
        for protect in (True, False):
            compressions = [
                KVCompression(method, ratio, protected=case.prompt.protected if protect else ())
                for case in cases
            ]
            tag = f"instructions-{method}-{ratio}-{protect}"
            row["protected" if protect else "unprotected"] = run(compressions, tag)
        rows.append(row)
    return {
        "prompt_tokens": [len(p) for p in prompts],
        "protected_tokens": [sum(b - a for a, b in case.prompt.protected) for case in cases],
        "full_cache": full,
        "presses": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--continuation", type=int, default=None, help="teacher-forced tokens per context")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--with-kvpress", action="store_true", help="then compare with kvpress")
    parser.add_argument("--quick", action="store_true", help="short contexts and few cases (a few minutes)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--methods", help="comma-separated subset of the methods (default: all but none)")
    parser.add_argument(
        "--passkey-tokens", type=int, default=None, help="passkey prompt length (default 2000)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    args = parser.parse_args()
    quick = args.quick
    continuation = args.continuation or (16 if quick else 32)
    passkey_tokens = args.passkey_tokens or (512 if quick else 2000)
    console = Console()
    engine = Engine(
        EngineConfig(
            num_threads=args.threads, max_model_len=2048, num_kv_blocks=512, enable_prefix_caching=False
        )
    )
    methods = args.methods.split(",") if args.methods else [m for m in METHODS if m != "none"]
    settings = [(method, ratio) for method in methods for ratio in RATIOS]
    results: dict[str, Any] = {"quick": quick, "methods": methods, "ratios": list(RATIOS)}
    if "kl" in args.sections:
        results |= kl_section(engine, settings, continuation, console)
    if "passkey" in args.sections:
        depths = [0.5] if quick else [0.1, 0.5, 0.9]
        results["passkey"] = passkey_section(engine, settings, passkey_tokens, depths, console)
    if "instructions" in args.sections:
        results["instructions"] = instructions_section(
            engine, settings, 120 if quick else 400, 2 if quick else 6, console
        )
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    _print(Console(width=160), results)
    if args.with_kvpress:
        compare_bench = str(Path(__file__).with_name("kvpress_compare_bench.py"))
        options = ["--continuation", str(continuation), "--threads", str(args.threads)]
        subprocess.run([sys.executable, compare_bench, *options], check=True)


def _print(console: Console, results: dict[str, Any]) -> None:
    if "presses" in results:
        _print_kl(console, results)
    if "passkey" in results or "instructions" in results:
        _print_quality(console, results)


def _print_kl(console: Console, results: dict[str, Any]) -> None:
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


def _print_quality(console: Console, results: dict[str, Any]) -> None:
    """One row per method and ratio: passkey accuracy, instructions followed with and without protection,
    KV held and decode tokens/s of the passkey runs (the longest contexts)."""
    passkey, instructions = results.get("passkey"), results.get("instructions")
    title = "KV compression quality"
    if passkey:
        title += f"; passkey prompts {passkey['prompt_tokens']} tokens"
    if instructions:
        title += f"; instruction prompts {instructions['prompt_tokens']} tokens"
    table = Table(title=title)
    columns = ["method", "ratio"]
    if passkey:
        columns += ["passkey acc", "KV MiB held", "÷ full", "decode tok/s", "÷ full"]
    if instructions:
        columns += ["instr. followed (protected)", "(unprotected)"]
    for column in columns:
        table.add_column(column, justify="right")

    def cells(pk: dict[str, Any] | None, ins: dict[str, Any] | None, full: bool) -> list[str]:
        out = []
        if passkey and pk is not None:
            base = passkey["full_cache"]
            out += [
                f"{pk['accuracy']:.0%}",
                f"{pk['kv_bytes_held'] / 2**20:.1f}",
                f"{pk['kv_bytes_held'] / base['kv_bytes_held']:.2f}x",
                f"{pk['decode_tokens_per_s']:.1f}",
                f"{pk['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f}x",
            ]
        if instructions and ins is not None:
            if full:
                out += [f"{ins['followed']:.0%}", f"{ins['followed']:.0%}"]
            else:
                out += [f"{ins['protected']['followed']:.0%}", f"{ins['unprotected']['followed']:.0%}"]
        return out

    table.add_row(
        "full cache",
        "0",
        *cells(passkey and passkey["full_cache"], instructions and instructions["full_cache"], True),
    )
    pk_rows = {(r["method"], r["ratio"]): r for r in passkey["presses"]} if passkey else {}
    ins_rows = {(r["method"], r["ratio"]): r for r in instructions["presses"]} if instructions else {}
    for method in results["methods"]:
        for ratio in results["ratios"]:
            key = (method, ratio)
            table.add_row(method, f"{ratio:.2f}", *cells(pk_rows.get(key), ins_rows.get(key), False))
    console.print(table)


if __name__ == "__main__":
    main()
