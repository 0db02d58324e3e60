"""Semantic KV reuse (SemShareKV) vs full prefill, on Wikipedia prompts that differ by a few sentences.

For each prompt length a Wikipedia extract (gensim's bundled dump) is the stored reference prompt; its KV
is exported once, as the precompute pipeline stores it. The new prompt is the same extract with a few
sentences replaced by sentences of another article, plus the same summarisation instruction. Measured
in one run on one engine (prefix cache off, one-shot prefill for both paths):

- TTFT: full prefill (the peer) vs reuse prefill (matching + recompute + the last token), and the ratio;
- fidelity vs full compute: first-token KL(full || reuse) and ROUGE-L F1 of the greedy generations;
- token-layers computed, as a share of a full prefill;
- match rate and aligned rate (a match to the very token an exact diff pairs it with), with and without
  RoPE on the embeddings;
- ablations: "none" (reuse every matched token in every layer), "layer0" (recompute layer 0 only),
  "full" (the shrinking schedule), and "full/no-rope" (the schedule with matching on plain embeddings).

Writes bench/results/semshare.json and prints markdown tables.

    python bench/semshare_bench.py [--quick] [--lengths 256,512,1024,2048] [--docs 2] [--max-tokens 48]
        [--output bench/results/semshare.json]
"""

from __future__ import annotations

import argparse
import bz2
import difflib
import json
import platform
import random
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from text_metrics import rouge_l

from precog.backend import Completion, Engine, EngineConfig, Request, SamplingParams
from precog.backend.reuse import KVReuse, LSHConfig, RecomputeSchedule, match_tokens
from precog.store import KVBlob

RESULTS = Path(__file__).parent / "results" / "semshare.json"
INSTRUCTION = "Summarise the text above in two sentences."
VARIANTS: dict[str, tuple[str, bool]] = {  # name -> (schedule preset, RoPE on the matching embeddings)
    "none": ("none", True),
    "layer0": ("layer0", True),
    "full": ("full", True),
    "full/no-rope": ("full", False),
}


def articles(count: int) -> list[list[str]]:
    """The sentences of the first `count` long articles of gensim's shortened English Wikipedia dump."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    path = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    found = []
    with bz2.open(path) as dump:
        for _, text, _ in extract_pages(dump):
            plain = re.sub(r"\s+", " ", filter_wiki(text)).strip()
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", plain) if 40 <= len(s) <= 400]
            if len(sentences) >= 150:
                found.append(sentences)
            if len(found) == count:
                break
    return found


def prompt_ids(engine: Engine, sentences: list[str]) -> list[int]:
    messages = [{"role": "user", "content": " ".join(sentences) + "\n\n" + INSTRUCTION}]
    text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(engine.tokenizer.encode(str(text)))


def document(engine: Engine, sentences: list[str], tokens: int) -> list[str]:
    """The leading sentences of an article whose prompt is about `tokens` tokens long."""
    doc: list[str] = []
    for sentence in sentences:
        if len(prompt_ids(engine, [*doc, sentence])) > tokens:
            break
        doc.append(sentence)
    return doc


def edit(doc: list[str], donor: list[str], count: int, rng: random.Random) -> list[str]:
    """doc with `count` sentences (never the first) replaced by sentences of another article."""
    edited = list(doc)
    for slot in rng.sample(range(1, len(doc)), min(count, len(doc) - 1)):
        edited[slot] = rng.choice(donor)
    return edited


@dataclass
class Run:
    ttft_s: float
    ttft_cpu_s: float
    logits: torch.Tensor
    completion: Completion


def run(engine: Engine, ids: list[int], max_tokens: int, reuse: KVReuse | None = None) -> Run:
    """One greedy request through the engine's public submit/step loop, timed to its first token."""
    logits: list[torch.Tensor] = []
    first: list[float] = []
    done: list[Completion] = []

    def on_event(_: object) -> None:
        if not first:
            first.append(time.perf_counter())

    def on_logits(row: torch.Tensor) -> None:
        if not logits:
            logits.append(row.clone())

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    request = Request(
        f"semshare-{time.perf_counter_ns()}",
        ids,
        params,
        on_event=on_event,
        on_finish=done.append,
        on_logits=on_logits,
        kv_reuse=reuse,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    engine.submit(request)
    cpu = 0.0
    while engine.has_work():
        engine.step()
        if first and not cpu:
            cpu = time.process_time() - cpu_started
    return Run(first[0] - started, cpu, logits[0], done[0])


def kl(full: torch.Tensor, approx: torch.Tensor) -> float:
    p, q = torch.log_softmax(full, -1), torch.log_softmax(approx, -1)
    return float((p.exp() * (p - q)).sum())


def aligned_rate(reference: list[int], ids: list[int], ref_index: list[int]) -> float:
    """Share of the tokens an exact diff pairs with a reference token that matched exactly that one."""
    blocks = difflib.SequenceMatcher(a=reference, b=ids, autojunk=False).get_matching_blocks()
    truth = {b.b + k: b.a + k for b in blocks for k in range(b.size)}
    return sum(1 for i, r in enumerate(ref_index) if truth.get(i) == r) / max(1, len(truth))


def measure(
    engine: Engine, doc: list[str], donor: list[str], length: int, max_tokens: int, rng: random.Random
) -> dict[str, Any]:
    reference_ids = prompt_ids(engine, doc)
    new_ids = prompt_ids(engine, edit(doc, donor, 1 + length // 512, rng))
    blob: KVBlob = engine.export_kv(reference_ids)  # the stored entry's KV (not timed)
    row: dict[str, Any] = {"length": len(new_ids), "reference_length": len(reference_ids)}
    for rope in (True, False):
        match = match_tokens(engine.model, new_ids, reference_ids, LSHConfig(use_rope=rope))
        key = "rope" if rope else "no_rope"
        row[f"match_rate_{key}"] = match.rate
        row[f"aligned_rate_{key}"] = aligned_rate(reference_ids, new_ids, match.ref_index.tolist())
    full = run(engine, new_ids, max_tokens)
    row["baseline"] = {"ttft_s": full.ttft_s, "ttft_cpu_s": full.ttft_cpu_s}
    for name, (preset, rope) in VARIANTS.items():
        reuse = KVReuse(blob, RecomputeSchedule.preset(preset), LSHConfig(use_rope=rope))  # type: ignore[arg-type]
        result = run(engine, new_ids, max_tokens, reuse)
        stats = reuse.stats
        assert stats is not None
        row[name] = {
            "ttft_s": result.ttft_s,
            "ttft_cpu_s": result.ttft_cpu_s,
            "speedup": full.ttft_s / result.ttft_s,
            "cpu_speedup": full.ttft_cpu_s / result.ttft_cpu_s,
            "first_token_kl": kl(full.logits, result.logits),
            "same_first_token": int(full.logits.argmax()) == int(result.logits.argmax()),
            "rouge_l": rouge_l(full.completion.text.lower().split(), result.completion.text.lower().split()),
            "computed_share": stats.computed_share,
            "match_s": stats.match_seconds,
            "matched": stats.matched,
        }
    return row


FIGURES = (
    "ttft_s",
    "ttft_cpu_s",
    "speedup",
    "cpu_speedup",
    "first_token_kl",
    "same_first_token",
    "rouge_l",
    "computed_share",
)
RATES = ("match_rate_rope", "match_rate_no_rope", "aligned_rate_rope", "aligned_rate_no_rope")


def summarise(rows: list[dict[str, Any]], lengths: list[int]) -> list[dict[str, Any]]:
    """Per target length, the mean over documents of every figure."""
    table = []
    per = len(rows) // len(lengths)
    for i, length in enumerate(lengths):
        group = rows[i * per : (i + 1) * per]
        entry: dict[str, Any] = {"target": length, "tokens": statistics.mean(r["length"] for r in group)}
        entry |= {key: statistics.mean(r[key] for r in group) for key in RATES}
        entry["baseline"] = {
            k: statistics.mean(r["baseline"][k] for r in group) for k in ("ttft_s", "ttft_cpu_s")
        }
        for name in VARIANTS:
            entry[name] = {k: statistics.mean(float(r[name][k]) for r in group) for k in FIGURES}
        table.append(entry)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| tokens | full TTFT s (cpu s) | reuse TTFT s (cpu s) | speedup wall / cpu | computed share "
        "| first-token KL | same 1st token | ROUGE-L |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        b, f = e["baseline"], e["full"]
        lines.append(
            f"| {e['tokens']:.0f} | {b['ttft_s']:.2f} ({b['ttft_cpu_s']:.2f}) | {f['ttft_s']:.2f} "
            f"({f['ttft_cpu_s']:.2f}) | {f['speedup']:.2f}x / {f['cpu_speedup']:.2f}x "
            f"| {f['computed_share']:.2f} | {f['first_token_kl']:.4f} | {f['same_first_token']:.2f} "
            f"| {f['rouge_l']:.2f} |"
        )
    lines += [
        "",
        "| tokens | match rate RoPE | match rate no RoPE | aligned RoPE | aligned no RoPE |",
        "|---|---|---|---|---|",
    ]
    for e in table:
        lines.append(
            f"| {e['tokens']:.0f} | {e['match_rate_rope']:.2f} | {e['match_rate_no_rope']:.2f} "
            f"| {e['aligned_rate_rope']:.2f} | {e['aligned_rate_no_rope']:.2f} |"
        )
    lines += [
        "",
        "| tokens | variant | cpu TTFT s | cpu speedup | computed | 1st-token KL | same 1st tok | ROUGE-L |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        for name in VARIANTS:
            v = e[name]
            lines.append(
                f"| {e['tokens']:.0f} | {name} | {v['ttft_cpu_s']:.2f} | {v['cpu_speedup']:.2f}x "
                f"| {v['computed_share']:.2f} | {v['first_token_kl']:.4f} | {v['same_first_token']:.2f} "
                f"| {v['rouge_l']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="256/512/1024 tokens, one document, 24 tokens")
    parser.add_argument("--lengths", default="256,512,1024,2048")
    parser.add_argument("--docs", type=int, default=2, help="documents per length")
    parser.add_argument("--max-tokens", type=int, default=48, help="greedy tokens compared by ROUGE-L")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    lengths = [256, 512, 1024] if args.quick else [int(x) for x in args.lengths.split(",")]
    docs, max_tokens = (1, 24) if args.quick else (args.docs, args.max_tokens)
    engine = Engine(
        EngineConfig(
            num_threads=args.threads,
            max_model_len=max(lengths) + max_tokens + 64,
            num_kv_blocks=(max(lengths) + max_tokens + 64) // 16 + 16,
            max_num_batched_tokens=max(lengths) + 64,  # one-shot prefill for the full-compute peer too
            enable_prefix_caching=False,
        )
    )
    rng = random.Random(args.seed)
    pool = articles(docs + 1)
    donor = pool[-1]
    run(engine, prompt_ids(engine, pool[0][:3]), 2)  # warm-up
    rows = []
    for length in lengths:
        for d in range(docs):
            doc = document(engine, pool[d], length)
            row = measure(engine, doc, donor, length, max_tokens, rng)
            print(f"{length}: {json.dumps(row)}", flush=True)
            rows.append(row)
    table = summarise(rows, lengths)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    report = {"env": env, "args": {**vars(args), "output": str(args.output)}, "rows": rows, "table": table}
    args.output.write_text(json.dumps(report, indent=2))
    print(markdown(table))


if __name__ == "__main__":
    main()
