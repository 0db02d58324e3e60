"""Sparse attention over a two-tier KV (SparseServe) against dense attention, on the real small model.

One engine (prefix caching on, so each long prompt is prefilled once and every configuration after that
reuses its blocks), switched between dense and sparse attention with `Engine.set_attention`:

1. selection quality: at every decode query of a passkey prompt, every layer and KV head, the pages
   Quest's bound keeps vs the oracle top-k pages by true attention mass (recall), the attention mass
   they cover and the attention-output error vs dense; the peer is StreamingLLM's rule at the same
   budget (sink page + the most recent pages);
2. needle (passkey) retrieval accuracy vs token budget, dense in the same run;
3. the fast tier: pages moved per decode step and hit rate vs its capacity and the batch size, with
   and without working-set-aware batching (the thrashing cliff, and the scheduler avoiding it);
4. decode throughput, sparse vs dense, at the longest contexts run here;
5. layer-segmented prefill vs ordinary prefill: time and the most KV pages resident at once.

Writes bench/results/sparse.json and prints markdown tables.

    python bench/sparse_bench.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.engine.kv_cache import KVCache
from precog.backend.sparse import (
    SparseAttention,
    SparseSettings,
    layer_segmented_prefill,
    page_upper_bounds,
    select_pages,
)
from precog.kernels import paged_attention

RESULTS = Path(__file__).parent / "results" / "sparse.json"
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
INTRO = (
    "There is an important piece of information hidden inside a lot of irrelevant text. "
    "Find it and memorize it. I will quiz you about it.\n"
)
QUESTION = "\nWhat is the pass key? The pass key is"
ALL_PAGES = 1 << 20  # a budget no context reaches: sparse attention over every page equals dense


def passkey_prompt(engine: Engine, length: int, key: int, depth: float) -> list[int]:
    """About `length` tokens of filler with the pass key sentence at `depth` (0: start, 1: end)."""
    tok = engine.tokenizer
    intro, question = tok.encode(INTRO), tok.encode(QUESTION)
    needle = tok.encode(f" The pass key is {key}. Remember it. {key} is the pass key. ")
    filler = tok.encode(FILLER * (length // 10))
    room = length - len(intro) - len(question) - len(needle)
    filler = filler[:room]
    at = int(depth * room)
    return intro + filler[:at] + needle + filler[at:] + question


# ---- 1. selection quality ------------------------------------------------------------------------------
class SelectionProbe(SparseAttention):
    """Attends over every page (dense) and, at each decode query, scores what each selection rule at
    each budget would have kept."""

    def __init__(self, engine: Engine, budgets: list[int]) -> None:
        spec = engine.spec
        super().__init__(
            SparseSettings(budget_pages=ALL_PAGES, fast_tier_pages=1 << 14),
            spec.num_layers,
            engine.block_manager.num_blocks,
            spec.num_kv_heads,
            engine.block_manager.block_size,
            spec.head_dim,
        )
        self.budgets = budgets
        self.samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {}

    def decode(
        self,
        layer: int,
        q: torch.Tensor,
        kv_cache: tuple[torch.Tensor, torch.Tensor],
        tables: torch.Tensor,
        lens: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        out = super().decode(layer, q, kv_cache, tables, lens, scale)
        for i in range(len(lens)):
            self._measure(layer, q[i], kv_cache, tables[i], int(lens[i]), scale)
        return out

    def _measure(
        self,
        layer: int,
        q: torch.Tensor,
        kv_cache: tuple[torch.Tensor, torch.Tensor],
        table: torch.Tensor,
        length: int,
        scale: float,
    ) -> None:
        bs, kvh = self.block_size, self.num_kv_heads
        pages = -(-length // bs)
        table = table[:pages]
        slots = (table[:, None] * bs + torch.arange(bs)[None, :]).flatten()[:length]
        keys = kv_cache[0].view(-1, kvh, q.shape[-1])[slots].transpose(0, 1)  # [KVH, T, D]
        values = kv_cache[1].view(-1, kvh, q.shape[-1])[slots].transpose(0, 1)
        grouped = q.view(kvh, -1, q.shape[-1]).float()  # [KVH, G, D]
        scores = torch.matmul(grouped, keys.transpose(-1, -2)) * scale  # [KVH, G, T]
        probs = torch.softmax(scores, dim=-1)
        dense = torch.matmul(probs, values)
        padded = torch.zeros(kvh, probs.shape[1], pages * bs)
        padded[..., :length] = probs
        mass = padded.view(kvh, -1, pages, bs).sum(dim=-1)  # [KVH, G, P]
        kmin, kmax = self.summaries.gather(layer, table[None])
        bounds = page_upper_bounds(grouped[None], kmin, kmax)
        for budget in self.budgets:
            if pages <= budget:
                continue
            oracle = mass.sum(dim=1).topk(budget, dim=-1).indices  # [KVH, budget]
            quest = select_pages(bounds, torch.tensor([pages]), budget, self.settings.sink_pages).pages[0]
            window = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(pages - budget + 1, pages)])
            for rule, chosen in (("quest", quest), ("sink+recent", window.expand(kvh, -1))):
                keep = torch.zeros(kvh, pages, dtype=torch.bool)
                keep.scatter_(1, chosen, True)
                recall = keep.gather(1, oracle).float().mean().item()
                covered = (mass * keep[:, None, :]).sum(dim=-1).mean().item()
                token_keep = keep.repeat_interleave(bs, dim=1)[:, :length]  # [KVH, T]
                masked = scores.masked_fill(~token_keep[:, None, :], float("-inf"))
                sparse = torch.matmul(torch.softmax(masked, dim=-1), values)
                error = ((sparse - dense).norm() / dense.norm()).item()
                self.samples.setdefault((rule, budget), []).append((recall, covered, error))


def selection_quality(
    engine: Engine, prompt: list[int], budgets: list[int], steps: int
) -> list[dict[str, Any]]:
    engine.set_attention(SparseSettings(budget_pages=ALL_PAGES))
    probe = SelectionProbe(engine, budgets)
    probe.rewritten(list(range(engine.block_manager.num_blocks)), engine.kv_cache.layers)
    engine.sparse = engine.runner.sparse = probe
    engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=steps))
    engine.set_attention(None)
    rows = []
    for (rule, budget), samples in sorted(probe.samples.items(), key=lambda item: (item[0][1], item[0][0])):
        t = torch.tensor(samples)
        rows.append(
            {
                "rule": rule,
                "budget_pages": budget,
                "budget_tokens": budget * probe.block_size,
                "queries": len(samples),
                "topk_page_recall": t[:, 0].mean().item(),
                "attention_mass_kept": t[:, 1].mean().item(),
                "output_rel_error": t[:, 2].mean().item(),
            }
        )
    return rows


# ---- 2. needle retrieval -------------------------------------------------------------------------------
def needle_accuracy(
    engine: Engine, needles: list[tuple[list[int], int]], budgets: list[int | None]
) -> list[dict[str, Any]]:
    rows = []
    params = SamplingParams(temperature=0.0, max_tokens=8)
    for budget in budgets:
        engine.set_attention(None if budget is None else SparseSettings(budget_pages=budget))
        outs = engine.generate([ids for ids, _ in needles], params)
        correct = [str(key) in out.text for out, (_, key) in zip(outs, needles, strict=True)]
        rows.append(
            {
                "attention": "dense" if budget is None else "sparse",
                "budget_tokens": None if budget is None else budget * engine.block_manager.block_size,
                "accuracy": sum(correct) / len(correct),
                "answers": [out.text for out in outs],
            }
        )
    engine.set_attention(None)
    return rows


# ---- 3. fast tier vs capacity and batch size -------------------------------------------------------------
def decode_run(engine: Engine, prompts: list[list[int]], tokens: int) -> dict[str, Any]:
    """Submit prompts (prefix-cached), step to the end. decode_s: time in steps where every sequence
    was decoding; wall_s: all steps; most_running: the largest batch the scheduler ran."""
    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    tag = time.monotonic_ns()
    for i, ids in enumerate(prompts):
        engine.submit(Request(f"bench-{tag}-{i}", ids, params))
    most, decode_s, decoded, wall_s, generated = 0, 0.0, 0, 0.0, 0
    while engine.has_work():
        scheduler = engine.scheduler
        pure = (
            bool(scheduler.running)
            and not scheduler.waiting
            and all(seq.num_computed_tokens >= seq.num_prompt_tokens for seq in scheduler.running)
        )
        started = time.perf_counter()
        events = engine.step()
        elapsed = time.perf_counter() - started
        wall_s += elapsed
        generated += len(events)
        most = max(most, len(scheduler.running))
        if pure:
            decode_s += elapsed
            decoded += len(events)
    return {
        "most_running": most,
        "decode_s": decode_s,
        "decode_tokens": decoded,
        "wall_s": wall_s,
        "tokens": generated,
    }


def tier_sweep(
    engine: Engine,
    prompts: list[list[int]],
    batches: list[int],
    capacities: list[int],
    budget: int,
    tokens: int,
) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        for capacity in capacities:
            for aware in (False, True):
                engine.set_attention(
                    SparseSettings(budget_pages=budget, fast_tier_pages=capacity, working_set_batching=aware)
                )
                run = decode_run(engine, prompts[:batch], tokens)
                assert engine.sparse is not None
                stats, sel = engine.sparse.tier_stats, engine.sparse.selection
                rows.append(
                    {
                        "batch": batch,
                        "capacity_pages": capacity,
                        "working_set_batching": aware,
                        "decode_steps": sel.decode_steps,
                        "most_running": run["most_running"],
                        "hit_rate": stats.hit_rate,
                        "pages_moved_per_step": stats.pages_loaded / max(sel.decode_steps, 1),
                        "pages_moved_per_token": stats.pages_loaded / max(batch * tokens, 1),
                        "overflows": stats.overflows,
                        "working_set_per_seq": sel.distinct_pages
                        / max(sel.selections, 1)
                        * engine.spec.num_layers,
                        "tokens_per_s": run["tokens"] / run["wall_s"],
                    }
                )
    engine.set_attention(None)
    return rows


# ---- 4. throughput -------------------------------------------------------------------------------------
def throughput(
    engine: Engine, prompts: list[list[int]], budgets: list[int], tokens: int
) -> list[dict[str, Any]]:
    rows = []
    for budget in [None, *budgets]:
        settings = None if budget is None else SparseSettings(budget_pages=budget, fast_tier_pages=1 << 14)
        engine.set_attention(settings)
        run = decode_run(engine, prompts, tokens)
        rows.append(
            {
                "attention": "dense" if budget is None else "sparse",
                "budget_tokens": None if budget is None else budget * engine.block_manager.block_size,
                "context_tokens": max(len(p) for p in prompts),
                "batch": len(prompts),
                "decode_tokens_per_s": run["decode_tokens"] / run["decode_s"],
            }
        )
    engine.set_attention(None)
    dense = rows[0]["decode_tokens_per_s"]
    for row in rows:
        row["vs_dense"] = row["decode_tokens_per_s"] / dense
    return rows


def attention_latency(
    contexts: list[int], batch: int, budget_pages: int, repeats: int
) -> list[dict[str, Any]]:
    """One layer's decode attention alone, on synthetic KV of the model's shape (3 KV heads x 64, 9 query
    heads): dense (precog.kernels.paged_attention over every page) vs sparse (selection, fast-tier lookup and
    the same kernel over the selected pages, warm tier), at contexts past what the model runs here."""
    rows = []
    bs, kvh, g, d = 16, 3, 3, 64
    gen = torch.Generator().manual_seed(0)
    for context in contexts:
        pages = context // bs
        k_cache = torch.randn(batch * pages, bs, kvh, d, generator=gen)
        v_cache = torch.randn(batch * pages, bs, kvh, d, generator=gen)
        tables = torch.arange(batch * pages).view(batch, pages)
        lens = torch.full((batch,), context)
        q = torch.randn(batch, kvh * g, d, generator=gen)
        sparse = SparseAttention(
            SparseSettings(budget_pages=budget_pages, fast_tier_pages=4 * batch * budget_pages * kvh),
            1,
            batch * pages,
            kvh,
            bs,
            d,
        )
        sparse.rewritten(list(range(batch * pages)), [(k_cache, v_cache)])
        scale = d**-0.5
        timings = {
            "dense": _median_s(partial(paged_attention, q, k_cache, v_cache, tables, lens, scale), repeats),
            "sparse": _median_s(
                partial(sparse.decode, 0, q, (k_cache, v_cache), tables, lens, scale), repeats
            ),
        }
        rows.append(
            {
                "context_tokens": context,
                "batch": batch,
                "budget_tokens": budget_pages * bs,
                "dense_ms": timings["dense"] * 1e3,
                "sparse_ms": timings["sparse"] * 1e3,
                "speedup": timings["dense"] / timings["sparse"],
            }
        )
    return rows


def _median_s(run: Callable[[], object], repeats: int) -> float:
    run()  # warm: the sparse path's tier then holds the selected pages
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return sorted(samples)[len(samples) // 2]


# ---- 5. layer-segmented prefill --------------------------------------------------------------------------
def segmented_prefill(engine: Engine, prompt: list[int], chunk: int) -> dict[str, Any]:
    """Both prefill the same (not prefix-cached) prompt in chunks of `chunk` tokens."""
    bs = engine.block_manager.block_size
    prompt = engine.tokenizer.encode("Segmented.\n") + prompt
    pages = -(-len(prompt) // bs)
    started = time.perf_counter()
    large = KVCache(engine.spec, pages, bs).layers
    layer_segmented_prefill(engine.model, large, list(range(pages)), prompt, chunk)
    segmented_s = time.perf_counter() - started
    engine.set_attention(None)
    budget = engine.scheduler.max_num_batched_tokens
    engine.scheduler.max_num_batched_tokens = chunk
    started = time.perf_counter()
    engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=1))
    ordinary_s = time.perf_counter() - started
    engine.scheduler.max_num_batched_tokens = budget
    return {
        "prompt_tokens": len(prompt),
        "chunk_tokens": chunk,
        "segmented_s": segmented_s,
        "ordinary_chunked_s": ordinary_s,
        "segmented_resident_pages": pages,
        "ordinary_resident_pages": pages * engine.spec.num_layers,
    }


# ---- driver --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer needles, batches and capacities")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", type=int, default=2048, help="needle and throughput context (tokens)")
    args = parser.parse_args()
    quick = args.quick
    engine = Engine(
        EngineConfig(
            num_threads=args.threads,
            max_model_len=max(args.context + 64, 1024),
            num_kv_blocks=1536,
            max_num_batched_tokens=1024,
        )
    )
    bs = engine.block_manager.block_size
    rng = random.Random(0)
    n_needles = 3 if quick else 8
    needles = []
    for i in range(n_needles):
        key = rng.randrange(10000, 99999)
        needles.append((passkey_prompt(engine, args.context, key, (i + 0.5) / n_needles), key))
    started = time.perf_counter()
    budgets_tokens = [64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024]
    budget_pages = [t // bs for t in budgets_tokens]
    needle_rows = needle_accuracy(engine, needles, [None, *budget_pages])
    print(f"needles done in {time.perf_counter() - started:.0f}s", flush=True)

    selection_rows = selection_quality(engine, needles[0][0], budget_pages, steps=4 if quick else 8)
    print("selection done", flush=True)

    short = 512 if quick else 1024
    batches = [2, 8] if quick else [2, 4, 8]
    tier_prompts = [
        engine.tokenizer.encode(f"Request {i}.\n")
        + passkey_prompt(engine, short, rng.randrange(10000, 99999), rng.random())
        for i in range(max(batches))
    ]
    tier_budget = 128 // bs
    capacities = [300, 600, 1200, 2400, 4800] if quick else [300, 600, 1200, 2400, 4800, 9600]
    tier_rows = tier_sweep(engine, tier_prompts, batches, capacities, tier_budget, tokens=12 if quick else 24)
    print("tier sweep done", flush=True)

    throughput_rows = throughput(
        engine, [ids for ids, _ in needles], [128 // bs, 256 // bs], tokens=8 if quick else 16
    )
    latency_rows = attention_latency(
        [2048, 8192, 32768] if quick else [2048, 8192, 32768, 65536],
        batch=4,
        budget_pages=256 // bs,
        repeats=5 if quick else 20,
    )
    prefill_row = segmented_prefill(engine, needles[0][0][: args.context // 2], chunk=256)
    print("prefill done", flush=True)
    results = {
        "quick": quick,
        "context_tokens": args.context,
        "block_size": bs,
        "selection": selection_rows,
        "needle": needle_rows,
        "tier": {"budget_tokens": tier_budget * bs, "context_tokens": short, "rows": tier_rows},
        "throughput": throughput_rows,
        "attention_latency": latency_rows,
        "layer_segmented_prefill": prefill_row,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print_tables(results)


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_tables(results: dict[str, Any]) -> None:
    _table(
        f"Page selection vs the oracle top-k pages (passkey prompt, {results['context_tokens']} tokens)",
        ["rule", "budget tokens", "queries", "top-k page recall", "attention mass kept", "output rel. error"],
        [
            [
                r["rule"],
                str(r["budget_tokens"]),
                str(r["queries"]),
                f"{r['topk_page_recall']:.3f}",
                f"{r['attention_mass_kept']:.3f}",
                f"{r['output_rel_error']:.3f}",
            ]
            for r in results["selection"]
        ],
    )
    _table(
        f"Needle (passkey) retrieval at {results['context_tokens']} tokens",
        ["attention", "budget tokens", "accuracy"],
        [
            [r["attention"], str(r["budget_tokens"] or "all"), f"{r['accuracy']:.2f}"]
            for r in results["needle"]
        ],
    )
    tier = results["tier"]
    _table(
        f"Fast tier vs capacity and batch ({tier['context_tokens']}-token prompts, "
        f"budget {tier['budget_tokens']} tokens)",
        [
            "batch",
            "capacity pages",
            "ws-aware",
            "most running",
            "hit rate",
            "pages moved/step",
            "pages moved/token",
            "overflows",
            "ws pages/seq",
            "tok/s (all steps)",
        ],
        [
            [
                str(r["batch"]),
                str(r["capacity_pages"]),
                "yes" if r["working_set_batching"] else "no",
                str(r["most_running"]),
                f"{r['hit_rate']:.3f}",
                f"{r['pages_moved_per_step']:.1f}",
                f"{r['pages_moved_per_token']:.1f}",
                str(r["overflows"]),
                f"{r['working_set_per_seq']:.0f}",
                f"{r['tokens_per_s']:.1f}",
            ]
            for r in tier["rows"]
        ],
    )
    _table(
        "Decode throughput, sparse vs dense",
        ["attention", "budget tokens", "context", "batch", "decode tok/s", "vs dense"],
        [
            [
                r["attention"],
                str(r["budget_tokens"] or "all"),
                str(r["context_tokens"]),
                str(r["batch"]),
                f"{r['decode_tokens_per_s']:.2f}",
                f"{r['vs_dense']:.2f}x",
            ]
            for r in results["throughput"]
        ],
    )
    _table(
        "One layer's decode attention alone (synthetic KV), sparse vs dense",
        ["context", "batch", "budget tokens", "dense ms", "sparse ms", "speedup"],
        [
            [
                str(r["context_tokens"]),
                str(r["batch"]),
                str(r["budget_tokens"]),
                f"{r['dense_ms']:.2f}",
                f"{r['sparse_ms']:.2f}",
                f"{r['speedup']:.2f}x",
            ]
            for r in results.get("attention_latency", [])
        ],
    )
    p = results["layer_segmented_prefill"]
    _table(
        "Layer-segmented vs ordinary chunked prefill",
        ["prompt tokens", "segmented s", "ordinary s", "KV pages resident (segmented)", "(ordinary)"],
        [
            [
                str(p["prompt_tokens"]),
                f"{p['segmented_s']:.1f}",
                f"{p['ordinary_chunked_s']:.1f}",
                str(p["segmented_resident_pages"]),
                str(p["ordinary_resident_pages"]),
            ]
        ],
    )


if __name__ == "__main__":
    main()
