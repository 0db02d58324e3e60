"""ThinKV chain-of-thought fidelity against KV bytes, beside uniform 2- and 4-bit quantisation.

Twenty short arithmetic word problems, each asked with a step-by-step system prompt and decoded
greedily by the real small model, all batched through the engine: once with the full float32 cache
(the reference), then with ThinKV at several ratios and with the uniform baselines (every token
quantised to 2 or 4 bits with the same kernels and group size once its thought closes, the prompt at
once; no eviction). The small model's own accuracy is low, so fidelity to the uncompressed run is the
measure: agreement of the final answer, and of the trace (common-prefix share and token ROUGE-L F1).
KV is reported as effective bytes (float32 for full-precision tokens, packed codes + float16 group
scales for quantised ones) over the full cache's bytes at the end of each trace, and as blocks held.
The ratio-0 ThinKV run calibrates the typing: the length trend of thought sparsity is fitted and the
thresholds put at the corrected sparsity's tertiles (in-sample: the same problems are then compressed
with that calibrated policy; copy the printed values into ThinKVPolicy's defaults).

Writes bench/results/thinkv.json and prints a table.

    python bench/thinkv_bench.py [--quick] [--max-tokens 96] [--ratios 0.5 0.75 0.9] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from text_metrics import rouge_l

from precog.backend import Engine, EngineConfig, SamplingParams
from precog.backend.compress import KVCompression
from precog.backend.outputs import Completion

RESULTS = Path(__file__).parent / "results" / "thinkv.json"
SYSTEM = "Solve the problem step by step, one short sentence per step. End with 'Answer: <number>'."
RATIOS = (0.5, 0.75, 0.9)
PROBLEMS: list[tuple[str, int]] = [
    ("A baker makes 24 muffins and sells 9. Then she bakes 15 more. How many muffins does she have?", 30),
    ("Tom has 7 boxes with 6 pencils in each box. He gives away 10 pencils. How many are left?", 32),
    ("A train travels 60 km each hour for 3 hours, then 45 km more. How far does it travel?", 225),
    ("Mia reads 12 pages a day for 5 days and 8 pages on the sixth day. How many pages in total?", 68),
    ("A farmer has 48 eggs and packs them in cartons of 6. How many cartons does he fill?", 8),
    ("Sam buys 3 shirts at 15 dollars each and a hat for 12 dollars. How much does he spend?", 57),
    ("A class has 32 students. A quarter of them walk to school. How many students walk?", 8),
    ("Lena saves 25 dollars a week. After 4 weeks she spends 40 dollars. How much does she keep?", 60),
    ("A garden has 9 rows of 11 tulips. 14 tulips are picked. How many tulips remain?", 85),
    ("Ben runs 5 km on Monday, twice as far on Tuesday, and 3 km on Wednesday. What is his total?", 18),
    ("A shop sells 18 apples in the morning and 3 times as many in the afternoon. How many in all?", 72),
    ("There are 120 marbles shared equally by 8 children. How many marbles does each child get?", 15),
    ("A bus has 40 seats. 23 people get on, then 9 get off, then 12 get on. How many people are on?", 26),
    ("Kim has 50 stickers. She gives 13 to Ana and 17 to Joe. How many stickers does Kim have left?", 20),
    ("A rectangle is 14 cm long and 6 cm wide. What is its area in square centimetres?", 84),
    ("Paul earns 9 dollars an hour and works 7 hours. He pays 13 dollars for lunch. What is left?", 50),
    ("A library has 250 books and buys 3 boxes of 20 books. How many books does it have now?", 310),
    ("Each cake needs 4 eggs. How many eggs are needed for 13 cakes?", 52),
    ("A tank holds 90 litres. It is filled 15 litres a minute. How many minutes to fill it from empty?", 6),
    ("Zoe has 3 packs of 12 cards and loses 5 cards. Then she finds 2. How many cards does she have?", 33),
]


def chat_ids(engine: Engine, question: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return engine.tokenizer.encode(str(text))


def final_answer(text: str) -> str | None:
    """The number after the last 'Answer:', else the last number of the text."""
    tail = text.rsplit("Answer:", 1)[-1] if "Answer:" in text else text
    numbers = re.findall(r"-?\d+(?:\.\d+)?", tail.replace(",", ""))
    if not numbers:
        return None
    return numbers[0] if "Answer:" in text else numbers[-1]


def common_prefix(reference: list[int], candidate: list[int]) -> float:
    """Share of the reference trace reproduced exactly before the first different token."""
    n = 0
    for a, b in zip(reference, candidate, strict=False):
        if a != b:
            break
        n += 1
    return n / max(1, len(reference))


def run(
    engine: Engine, prompts: list[list[int]], params: SamplingParams, compression: KVCompression | None
) -> tuple[list[Completion], float]:
    start = time.perf_counter()
    completions = engine.generate(prompts, params, compression=compression)
    return completions, time.perf_counter() - start


def measure(
    engine: Engine,
    name: str,
    completions: list[Completion],
    seconds: float,
    reference: list[Completion],
    truths: list[int],
) -> dict[str, Any]:
    answers = [final_answer(c.text) for c in completions]
    ref_answers = [final_answer(c.text) for c in reference]
    full_bytes = effective = blocks = 0
    block_size = engine.block_manager.block_size
    for c in completions:
        report = engine.thinkv.report(c.request_id)
        tokens = len(c.prompt_token_ids) + len(c.token_ids) - 1  # the last token never gets KV
        full = tokens * engine.spec.kv_bytes_per_token(engine.kv_cache.dtype)
        full_bytes += full
        effective += full if report is None else report.effective_bytes
        blocks += -(-tokens // block_size) if report is None else report.blocks_held
    n = len(completions)
    return {
        "config": name,
        "answer_agreement": sum(a == r for a, r in zip(answers, ref_answers, strict=True)) / n,
        "accuracy": sum(a == str(t) for a, t in zip(answers, truths, strict=True)) / n,
        "trace_prefix": sum(
            common_prefix(r.token_ids, c.token_ids) for r, c in zip(reference, completions, strict=True)
        )
        / n,
        "trace_rouge_l": sum(
            rouge_l(r.token_ids, c.token_ids) for r, c in zip(reference, completions, strict=True)
        )
        / n,
        "effective_kv_share": effective / full_bytes,
        "blocks_held": blocks,
        "tokens_generated": sum(len(c.token_ids) for c in completions),
        "decode_tokens_per_s": sum(len(c.token_ids) for c in completions) / seconds,
    }


def calibrate(engine: Engine, completions: list[Completion]) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of thought sparsity on ln(keys visible), and the tertiles of the sparsity
    with that trend removed: ThinKVPolicy's length_slope and thresholds."""
    rows = [
        (math.log(max(visible, 1.0)), sparsity)
        for c in completions
        if (report := engine.thinkv.report(c.request_id))
        for *_, sparsity, visible in report.thoughts
    ]
    if len(rows) < 3:
        raise RuntimeError("too few thoughts to calibrate ThinKV's thresholds")
    x, y = torch.tensor(rows, dtype=torch.float64).T
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    corrected = y - slope * x
    return slope, (float(corrected.quantile(1 / 3)), float(corrected.quantile(2 / 3)))


def kind_counts(engine: Engine, completions: list[Completion]) -> dict[str, int]:
    counts: dict[str, int] = {"R": 0, "E": 0, "T": 0}
    for c in completions:
        report = engine.thinkv.report(c.request_id)
        for _, _, kind, *_ in report.thoughts if report else []:
            counts[kind] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 problems, 64 tokens each")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    problems = PROBLEMS[:8] if args.quick else PROBLEMS
    max_tokens = 64 if args.quick else args.max_tokens
    engine = Engine(
        EngineConfig(num_threads=args.threads, max_model_len=1024, num_kv_blocks=1024, max_num_seqs=32)
    )
    prompts = [chat_ids(engine, q) for q, _ in problems]
    truths = [a for _, a in problems]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    console = Console()
    reference, seconds = run(engine, prompts, params, None)
    rows = [measure(engine, "full cache (fp32)", reference, seconds, reference, truths)]
    default = engine.thinkv.policy
    kinds: dict[str, dict[str, int]] = {}
    completions, seconds = run(engine, prompts, params, KVCompression("thinkv", 0.0))
    rows.append(measure(engine, "thinkv r=0 (typing only)", completions, seconds, reference, truths))
    slope, thresholds = calibrate(engine, completions)
    calibrated = replace(default, length_slope=slope, thresholds=thresholds)
    console.print(
        f"calibrated: length_slope={slope:.4f} thresholds=({thresholds[0]:.4f}, {thresholds[1]:.4f})"
    )
    configs = [(f"thinkv r={r}", calibrated, r) for r in args.ratios]
    configs += [(f"uniform {b}-bit", replace(default, uniform_bits=b), 0.5) for b in (4, 2)]
    for name, policy, ratio in configs:
        engine.thinkv.policy = policy
        completions, seconds = run(engine, prompts, params, KVCompression("thinkv", ratio))
        rows.append(measure(engine, name, completions, seconds, reference, truths))
        kinds[name] = kind_counts(engine, completions)
        console.print(f"{name}: {rows[-1]}")
    engine.thinkv.policy = default
    results = {
        "machine": platform.platform(),
        "problems": len(problems),
        "max_tokens": max_tokens,
        "policy": {k: getattr(calibrated, k) for k in calibrated.__dataclass_fields__},
        "calibrated": {"length_slope": slope, "thresholds": thresholds},
        "thought_kinds": kinds,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    _print(console, results)


def _print(console: Console, results: dict[str, Any]) -> None:
    table = Table(
        title=f"ThinKV CoT fidelity vs the fp32 cache ({results['problems']} problems, greedy, "
        f"{results['max_tokens']} tokens max)"
    )
    for column in (
        "config",
        "answer = ref",
        "accuracy",
        "trace prefix",
        "ROUGE-L",
        "eff. KV",
        "blocks",
        "tok/s",
    ):
        table.add_column(column)
    for row in results["rows"]:
        table.add_row(
            row["config"],
            f"{row['answer_agreement']:.2f}",
            f"{row['accuracy']:.2f}",
            f"{row['trace_prefix']:.2f}",
            f"{row['trace_rouge_l']:.2f}",
            f"{row['effective_kv_share']:.3f}",
            str(row["blocks_held"]),
            f"{row['decode_tokens_per_s']:.1f}",
        )
    console.print(table)
    console.print(f"calibrated typing (ratio-0 run): {results['calibrated']}")
    console.print(f"thought kinds: {results['thought_kinds']}")


if __name__ == "__main__":
    main()
