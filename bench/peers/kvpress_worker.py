"""The kvpress side of bench/kvpress_compare_bench.py; runs under .venv-peers/bin/python, never in our venv.

    .venv-peers/bin/python bench/peers/kvpress_worker.py JOB_DIR

Reads JOB_DIR/job.json (checkpoint folder, prompts with their teacher-forced continuations, presses,
ratios), loads our prepared checkpoint as transformers' LlamaForCausalLM and, for every prompt, press
and ratio, prefills the prompt inside kvpress's `press(model)` context manager, recording what each
attention layer's `score` got and returned; then feeds the continuation (outside the press, at the
prompt's true positions, as kvpress's pipeline does after compressing) and compares its next-token
distributions with the uncompressed run's. Writes into JOB_DIR:

    inputs.safetensors   "{prompt}/{layer}/hidden|keys|values": the layer inputs kvpress scored
    scores.safetensors   "{prompt}/{method}/{ratio}/{layer}/scores|kept": its scores and kept indices
    full_logits.safetensors  "{prompt}": the uncompressed continuation logits (to check the models agree)
    results.json         KL / top-1 per method and ratio, versions, timings
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kvpress
import torch
import transformers
from kvpress.utils import compute_n_kept
from safetensors.torch import save_file
from transformers import DynamicCache, LlamaForCausalLM


def recording(
    press: Any, scores: dict[int, torch.Tensor], inputs: dict[int, dict[str, torch.Tensor]]
) -> None:
    """Wrap press.score so every layer's inputs and scores are kept (batch of one)."""
    original = press.score

    def score(module: Any, hidden_states: Any, keys: Any, values: Any, attentions: Any, kwargs: Any) -> Any:
        result = original(module, hidden_states, keys, values, attentions, kwargs)
        layer = module.layer_idx
        scores[layer] = result[0].detach().clone()
        inputs[layer] = {"hidden": hidden_states[0], "keys": keys[0], "values": values[0]}
        return result

    press.score = score


def continuation_logits(
    model: LlamaForCausalLM, ids: list[int], forced: list[int], press: Any | None
) -> torch.Tensor:
    """Prefill ids (compressed by press when given), then feed forced[:-1] at positions T.. at once:
    [len(forced) - 1, vocab] logits, row j predicting forced[j + 1]."""
    cache = DynamicCache()
    t = len(ids)
    prompt = torch.tensor([ids])
    prefill = {
        "input_ids": prompt,
        "past_key_values": cache,
        "position_ids": torch.arange(t)[None],
        "cache_position": torch.arange(t),
        "use_cache": True,
        "logits_to_keep": 1,
    }
    if press is None:
        model(**prefill)
    else:
        with press(model):
            model(**prefill)
    follow = torch.tensor([forced[:-1]])
    out = model(
        input_ids=follow,
        past_key_values=cache,
        position_ids=torch.arange(t, t + follow.shape[1])[None],
        use_cache=True,
    )
    return out.logits[0].float()


def kl_top1(full: list[torch.Tensor], compressed: list[torch.Tensor]) -> dict[str, float]:
    """Mean KL(full || compressed) in nats and top-1 agreement over every continuation position."""
    p = torch.log_softmax(torch.cat(full).double(), dim=-1)
    q = torch.log_softmax(torch.cat(compressed).double(), dim=-1)
    kl = (p.exp() * (p - q)).sum(dim=-1)
    agree = (p.argmax(dim=-1) == q.argmax(dim=-1)).double()
    return {"kl_mean": float(kl.mean()), "top1_agreement": float(agree.mean())}


@torch.inference_mode()
def main(job_dir: Path) -> None:
    job = json.loads((job_dir / "job.json").read_text())
    torch.set_num_threads(int(job["threads"]))
    transformers.utils.logging.disable_progress_bar()
    model = LlamaForCausalLM.from_pretrained(job["model_dir"], dtype=torch.float32).eval()
    prompts: dict[str, dict[str, list[int]]] = job["prompts"]

    full = {name: continuation_logits(model, p["ids"], p["forced"], None) for name, p in prompts.items()}
    full_logits = {name: logits.contiguous() for name, logits in full.items()}
    save_file(full_logits, str(job_dir / "full_logits.safetensors"))

    layer_inputs: dict[str, torch.Tensor] = {}
    score_tensors: dict[str, torch.Tensor] = {}
    rows = []
    for method, (class_name, kwargs) in job["presses"].items():
        for ratio in job["ratios"]:
            start = time.perf_counter()
            compressed = []
            for name, p in prompts.items():
                press = getattr(kvpress, class_name)(compression_ratio=ratio, **kwargs)
                scores: dict[int, torch.Tensor] = {}
                inputs: dict[int, dict[str, torch.Tensor]] = {}
                recording(press, scores, inputs)
                compressed.append(continuation_logits(model, p["ids"], p["forced"], press))
                for layer, layer_scores in scores.items():
                    n_kept = compute_n_kept(layer_scores.shape[-1], ratio)
                    key = f"{name}/{method}/{ratio}/{layer}"
                    score_tensors[f"{key}/scores"] = layer_scores.float().contiguous()
                    score_tensors[f"{key}/kept"] = layer_scores.topk(n_kept, dim=-1).indices.contiguous()
                    if f"{name}/{layer}/keys" not in layer_inputs:
                        for part, tensor in inputs[layer].items():
                            layer_inputs[f"{name}/{layer}/{part}"] = tensor.float().contiguous()
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    **kl_top1(list(full.values()), compressed),
                    "wall_s": time.perf_counter() - start,
                }
            )
            print(f"kvpress {method} {ratio}: {rows[-1]}", file=sys.stderr, flush=True)
    save_file(layer_inputs, str(job_dir / "inputs.safetensors"))
    save_file(score_tensors, str(job_dir / "scores.safetensors"))
    versions = {
        "kvpress": version("kvpress"),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    (job_dir / "results.json").write_text(json.dumps({"presses": rows, "versions": versions}, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
