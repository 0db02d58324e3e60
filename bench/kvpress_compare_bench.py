"""Our presses side by side with NVIDIA's kvpress on the same model, prompts, layer inputs and ratios.

kvpress (bench/peers.txt, `make peers`) runs in .venv-peers as bench/peers/kvpress_worker.py, on our
prepared checkpoint loaded as transformers' LlamaForCausalLM; our code never imports it. Three checks:

1. Layer inputs: the keys (RoPE applied) and values our engine caches vs those kvpress compresses.
2. Scores on the same layer inputs: kvpress hands its `score` hidden states, keys and values; we feed the
   very same tensors to our press (our model's W_q and RoPE table) and compare scores (Pearson r, max
   |diff| over max |score|) and kept-token sets (Jaccard per layer and KV head) at every ratio. Both
   presses get the same parameters (our press's fields, which carry kvpress's names and defaults).
3. Downstream: the contexts of bench/kv_compression_bench.py, whole prompt compressed after prefill, then
   the uncompressed run's greedy continuation teacher-forced; KL(full || compressed) and top-1 agreement
   of next-token distributions, each side against its own uncompressed run.

Deliberate differences, none exercised here: our presses always keep protected spans (system prompt,
marked instructions) and then grow the budget to max(budget, protected); they accept prompts no longer
than the sinks or SnapKV's window (kvpress asserts); Expected Attention clamps its future positions to
our RoPE table (max_model_len: no query comes later), where kvpress rotates past it; the engine frees
the evicted blocks of its paged cache instead of slicing a DynamicCache. kvpress's pipeline compresses
the context only and appends the question afterwards; here both sides compress the whole prompt, as our
engine does.

Writes bench/results/kvpress_compare.json and prints a table.

    python bench/kvpress_compare_bench.py [--quick] [--peer-python .venv-peers/bin/python]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from kv_compression_bench import Run, chat_ids, compare, contexts, run_all
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file

from precog.backend import Engine, EngineConfig, prepared_model_dir
from precog.backend.compress import PRESSES, KVCompression, LayerInputs, ScorerPress

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "kvpress_compare.json"
WORKER = ROOT / "bench" / "peers" / "kvpress_worker.py"
RATIOS = (0.25, 0.5, 0.75, 0.9)
KVPRESS_CLASSES = {
    "expected_attention": "ExpectedAttentionPress",
    "snapkv": "SnapKVPress",
    "streaming_llm": "StreamingLLMPress",
    "knorm": "KnormPress",
}


def press_parameters(method: str) -> dict[str, Any]:
    """Our press's fields besides the ratio: kvpress gets the same values under the same names."""
    press = PRESSES[method]()
    fields = dataclasses.fields(press)
    return {f.name: getattr(press, f.name) for f in fields if f.name != "compression_ratio"}


def run_kvpress(peer_python: Path, job: dict[str, Any], work: Path) -> None:
    (work / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    subprocess.run([str(peer_python), str(WORKER), str(work)], check=True, cwd=work, env=env)


def relative_max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))


def pearson(ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """Per row of [KVH, T]; 1 where both rows are constant and equal."""
    a = ours.double() - ours.double().mean(-1, keepdim=True)
    b = theirs.double() - theirs.double().mean(-1, keepdim=True)
    denom = a.norm(dim=-1) * b.norm(dim=-1)
    same = torch.isclose(ours.double(), theirs.double()).all(dim=-1)
    return torch.where(denom > 0, (a * b).sum(-1) / denom.clamp_min(1e-300), same.double())


def jaccard(ours: torch.Tensor, theirs: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Per KV head: |A ∩ B| / |A ∪ B| of two [KVH, n] index sets."""
    a = torch.zeros(ours.shape[0], num_tokens, dtype=torch.bool).scatter_(1, ours, True)
    b = torch.zeros(theirs.shape[0], num_tokens, dtype=torch.bool).scatter_(1, theirs, True)
    return (a & b).sum(-1).double() / (a | b).sum(-1).double()


def layer_inputs(engine: Engine, tensors: dict[str, torch.Tensor], prompt: str, layer: int) -> LayerInputs:
    """kvpress's layer inputs with our model's query projection and RoPE table."""
    attention = engine.model.layers[layer].self_attn
    q_size = attention.num_heads * attention.head_dim
    bias = attention.qkv_proj.bias
    return LayerInputs(
        keys=tensors[f"{prompt}/{layer}/keys"],
        values=tensors[f"{prompt}/{layer}/values"],
        hidden=tensors[f"{prompt}/{layer}/hidden"],
        q_weight=attention.qkv_proj.weight[:q_size],
        q_bias=None if bias is None else bias[:q_size],
        cos=engine.model.rope.cos,
        sin=engine.model.rope.sin,
        num_heads=attention.num_heads,
    )


@torch.inference_mode()
def compare_scores(
    engine: Engine,
    prompts: dict[str, list[int]],
    inputs: dict[str, torch.Tensor],
    scores: dict[str, torch.Tensor],
) -> dict[tuple[str, float], dict[str, float]]:
    """(method, ratio) -> score correlation, max relative difference and kept-set Jaccard, over every
    prompt, layer and KV head."""
    out = {}
    num_layers = len(engine.model.layers)
    for method in KVPRESS_CLASSES:
        for ratio in RATIOS:
            press: ScorerPress = PRESSES[method](compression_ratio=ratio)
            corr, diff, jac = [], [], []
            for name, ids in prompts.items():
                for layer in range(num_layers):
                    data = layer_inputs(engine, inputs, name, layer)
                    key = f"{name}/{method}/{ratio}/{layer}"
                    ours, theirs = press.score(data).float(), scores[f"{key}/scores"]
                    corr.append(pearson(ours, theirs))
                    diff.append(relative_max_diff(ours, theirs))
                    kept = press.select(data, torch.zeros(len(ids), dtype=torch.bool))
                    jac.append(jaccard(kept, scores[f"{key}/kept"], len(ids)))
            corrs, jacs = torch.cat(corr), torch.cat(jac)
            out[(method, ratio)] = {
                "score_pearson_min": float(corrs.min()),
                "score_pearson_mean": float(corrs.mean()),
                "score_max_rel_diff": max(diff),
                "kept_jaccard_mean": float(jacs.mean()),
                "kept_jaccard_min": float(jacs.min()),
                "kept_identical_share": float((jacs == 1).double().mean()),
            }
    return out


def compare_inputs(
    engine: Engine, prompts: dict[str, list[int]], inputs: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Our engine's cached K (RoPE applied) and V vs kvpress's: the largest relative difference."""
    worst = {"keys": 0.0, "values": 0.0}
    for name, ids in prompts.items():
        blob = engine.export_kv(ids)
        for layer, pair in enumerate(zip(blob.keys, blob.values, strict=True)):
            for part, ours in zip(("keys", "values"), pair, strict=True):
                diff = relative_max_diff(ours.float(), inputs[f"{name}/{layer}/{part}"])
                worst[part] = max(worst[part], diff)
    return {"keys_max_rel_diff": worst["keys"], "values_max_rel_diff": worst["values"]}


def compare_full_logits(
    full: list[Run], names: list[str], theirs: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Uncompressed continuation logits of our engine vs transformers': max |diff| and top-1 agreement."""
    ours = torch.cat([torch.stack(run.logits[1:]).float() for run in full])
    ref = torch.cat([theirs[name] for name in names])
    return {
        "logits_max_abs_diff": float((ours - ref).abs().max()),
        "top1_agreement": float((ours.argmax(-1) == ref.argmax(-1)).double().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--continuation", type=int, default=32, help="teacher-forced tokens per context")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one context, 16 continuation tokens")
    parser.add_argument("--peer-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 170)
    if not args.peer_python.exists():  # `make bench` runs every bench; this one needs `make peers` too
        console.print(f"kvpress comparison skipped: {args.peer_python} missing (run `make peers`)")
        return
    torch.set_num_threads(args.threads)
    engine = Engine(
        EngineConfig(
            num_threads=args.threads, max_model_len=2048, num_kv_blocks=512, enable_prefix_caching=False
        )
    )
    texts = contexts()
    if args.quick:
        texts = dict(list(texts.items())[:1])
    continuation = 16 if args.quick else args.continuation
    prompts = {name: chat_ids(engine, *pair) for name, pair in texts.items()}
    full = [Run(ids, None) for ids in prompts.values()]
    run_all(engine, full, KVCompression("none", 0.0), continuation)
    forced = {name: run.greedy_tokens() for name, run in zip(prompts, full, strict=True)}

    job = {
        "model_dir": str(prepared_model_dir()),
        "threads": args.threads,
        "prompts": {name: {"ids": ids, "forced": forced[name]} for name, ids in prompts.items()},
        "ratios": list(RATIOS),
        "presses": {m: [cls, press_parameters(m)] for m, cls in KVPRESS_CLASSES.items()},
    }
    with tempfile.TemporaryDirectory(prefix="kvpress-compare-") as tmp:
        work = Path(tmp)
        console.print(f"kvpress worker: {len(prompts)} prompts x {len(KVPRESS_CLASSES)} presses x {RATIOS}")
        run_kvpress(args.peer_python, job, work)
        peer = json.loads((work / "results.json").read_text())
        inputs = load_file(str(work / "inputs.safetensors"))
        scores = load_file(str(work / "scores.safetensors"))
        full_logits = load_file(str(work / "full_logits.safetensors"))
        score_rows = compare_scores(engine, prompts, inputs, scores)
        input_check = compare_inputs(engine, prompts, inputs)
    model_check = compare_full_logits(full, list(prompts), full_logits)

    theirs = {(row["method"], row["ratio"]): row for row in peer["presses"]}
    rows = []
    for method in KVPRESS_CLASSES:
        for ratio in RATIOS:
            runs = [Run(ids, forced[name]) for name, ids in prompts.items()]
            run_all(engine, runs, KVCompression(method, ratio), continuation)
            ours = compare(full, runs)
            peer_row = theirs[(method, ratio)]
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    **score_rows[(method, ratio)],
                    "ours_kl": ours["kl_mean"],
                    "ours_top1": ours["top1_agreement"],
                    "kvpress_kl": peer_row["kl_mean"],
                    "kvpress_top1": peer_row["top1_agreement"],
                }
            )
    results = {
        "contexts": {name: len(ids) for name, ids in prompts.items()},
        "continuation_tokens": continuation,
        "press_parameters": {m: press_parameters(m) for m in KVPRESS_CLASSES},
        "layer_inputs": input_check,
        "uncompressed_logits_vs_transformers": model_check,
        "rows": rows,
        "versions": {**peer["versions"], "ours_torch": torch.__version__},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    _print(console, results)


def _print(console: Console, results: dict[str, Any]) -> None:
    inputs, logits = results["layer_inputs"], results["uncompressed_logits_vs_transformers"]
    console.print(
        f"layer inputs, ours vs kvpress (max |diff| / max |x|): keys {inputs['keys_max_rel_diff']:.1e}, "
        f"values {inputs['values_max_rel_diff']:.1e}; uncompressed logits max |diff| "
        f"{logits['logits_max_abs_diff']:.1e}, top-1 agree {logits['top1_agreement']:.1%}"
    )
    table = Table(
        title=(
            f"ours vs kvpress {results['versions']['kvpress']} (contexts {results['contexts']} tokens, "
            f"{results['continuation_tokens']} teacher-forced tokens each)"
        )
    )
    columns = (
        "method",
        "ratio",
        "score r (min)",
        "score Δ/max",
        "kept Jaccard mean (min)",
        "KL ours",
        "KL kvpress",
        "KL ours - kvpress",
        "top-1 ours",
        "top-1 kvpress",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["rows"]:
        table.add_row(
            row["method"],
            f"{row['ratio']:.2f}",
            f"{row['score_pearson_min']:.6f}",
            f"{row['score_max_rel_diff']:.1e}",
            f"{row['kept_jaccard_mean']:.4f} ({row['kept_jaccard_min']:.3f})",
            f"{row['ours_kl']:.4f}",
            f"{row['kvpress_kl']:.4f}",
            f"{row['ours_kl'] - row['kvpress_kl']:+.1e}",
            f"{row['ours_top1']:.1%}",
            f"{row['kvpress_top1']:.1%}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
