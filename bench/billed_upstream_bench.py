"""Hits in front of an upstream that bills per token: what each parallel-path setting sends it, and the cost.

    .venv/bin/python bench/billed_upstream_bench.py [--entries 20] [--hits 80] [--misses 20] [--ttft-ms 300]

A gateway over real HTTP with a stored entry per question, in front of the deterministic stand-in
upstream (tests/gateway/fake_upstream.py, answering after `--ttft-ms`), which records every request it
receives: a request received is a request billed (its prompt at least). One shuffled stream of hits
(stored questions reworded, so the semantic tier decides them) and misses (new questions), run against:

- parallel path, no delay (StorInfer's default: the upstream starts with the lookup; a hit cancels it),
- `upstream_bills_per_token` (the external-upstream profile: not before the lookup's measured p99),
- no parallel path (the upstream only after a miss).

Printed per setting: upstream requests received while a hit was served and the tokens they billed (the
stand-in's own usage), hit and miss latency (p50 / p99), and the spend the gateway counted from the
upstream's usage. The calibrator's sampled checks (a would-be hit relayed on purpose, see
precog/gateway/calibration.py) are counted apart: they are spend the admin chooses.
Writes bench/results/billed_upstream.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "billed_upstream.json"
sys.path.insert(0, str(ROOT))

from precog.gateway import GatewaySettings, create_app  # noqa: E402
from precog.store import Embedder, Entry, Store, scope_key  # noqa: E402
from tests.gateway.fake_upstream import UpstreamState, answer_for, create_upstream  # noqa: E402
from tests.gateway.support import ServerThread, chat  # noqa: E402

SETTINGS = {
    "parallel path, no delay": {"parallel_path": True, "parallel_delay_ms": 0.0},
    "upstream_bills_per_token": {"parallel_path": True, "upstream_bills_per_token": True},
    "no parallel path": {"parallel_path": False},
}
PROMPT_TOKENS = 7  # what the stand-in upstream reports (and bills) per request


def questions(n: int, kind: str) -> list[str]:
    return [f"What is the {kind} fact number {i} about the harbour of Town{i}?" for i in range(n)]


def seed_store(path: Path, embedder: Embedder, stored: list[str]) -> None:
    vectors = embedder.encode(stored)
    with Store.open(path, progress=False) as store:
        for question, vector in zip(stored, vectors, strict=True):
            store.put(
                Entry(
                    scope=scope_key("test-model", "", "default"),
                    query=question,
                    answer=answer_for(question),
                    embedding=np.asarray(vector),
                    model="test-model",
                )
            )


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else None


def run(
    name: str, overrides: dict[str, Any], stream: list[tuple[str, bool]], args: Any, embedder: Embedder
) -> dict[str, Any]:
    state = UpstreamState(delay_s=args.ttft_ms / 1000)
    upstream = ServerThread(create_upstream(state)).start()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        seed_store(store, embedder, questions(args.entries, "stored"))
        settings = GatewaySettings(
            upstream_url=upstream.url, store_path=store, rate_limit_per_minute=0, **overrides
        )
        gateway = ServerThread(create_app(settings, embedder=embedder)).start()
        latency: dict[bool, list[float]] = {True: [], False: []}
        sent_for_hits = checks = unplanned = 0
        try:
            for question, hit in stream:
                before = len(state.requests)
                started = time.perf_counter()
                response = httpx.post(
                    f"{gateway.url}/v1/chat/completions", json=chat(question, temperature=1.0), timeout=60
                )
                elapsed = (time.perf_counter() - started) * 1000
                served = response.headers["x-precog-cache"] == "hit"
                if hit and not served and "relayed to check" in response.headers["x-precog-cache-reason"]:
                    checks += 1  # the calibrator's sampled check: a hit relayed on purpose
                    continue
                unplanned += served != hit
                latency[served].append(elapsed)
                if served:
                    time.sleep(0.02)  # a request the hit cancelled may still be arriving
                    sent_for_hits += len(state.requests) - before
            time.sleep(args.ttft_ms / 1000 + 0.5)
            stats = httpx.get(f"{gateway.url}/admin/stats", timeout=10).json()
        finally:
            gateway.stop()
            upstream.stop()
    return {
        "setting": name,
        "overrides": overrides,
        "hits": len(latency[True]),
        "misses": len(latency[False]),
        "outcome_not_as_planned": unplanned,
        "calibration_checks": checks,
        "upstream_requests_for_hits": sent_for_hits,
        "prompt_tokens_billed_for_hits": PROMPT_TOKENS * sent_for_hits,
        "upstream_requests_total": len(state.requests),
        "hit_ms": {"p50": pct(latency[True], 0.5), "p99": pct(latency[True], 0.99)},
        "miss_ms": {"p50": pct(latency[False], 0.5), "p99": pct(latency[False], 0.99)},
        "gateway_upstream_tokens": stats["upstream_tokens"],
        "gateway_cost_spent_usd": stats["cost_spent_usd"],
        "gateway_tokens_saved": stats["tokens_saved"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--hits", type=int, default=80)
    parser.add_argument("--misses", type=int, default=20)
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    stored = questions(args.entries, "stored")
    rewordings = [lambda q: q.rstrip("?"), str.lower, lambda q: q.replace("What is", "What's")]
    hits = [(rng.choice(rewordings)(rng.choice(stored)), True) for _ in range(args.hits)]
    misses = [(q, False) for q in questions(args.misses, "unseen")]
    stream = hits + misses
    rng.shuffle(stream)
    embedder = Embedder()
    rows = [run(name, overrides, stream, args, embedder) for name, overrides in SETTINGS.items()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seed": args.seed, "ttft_ms": args.ttft_ms, "rows": rows}, indent=1))
    print(f"\n{args.hits} hits + {args.misses} misses, stand-in upstream TTFT {args.ttft_ms:.0f} ms")
    print(
        f"{'setting':<28}{'upstream reqs for hits':>24}{'tokens billed':>15}"
        f"{'hit p50/p99 ms':>18}{'miss p50/p99 ms':>18}{'spent (usage)':>15}"
    )
    for r in rows:
        spent = r["gateway_upstream_tokens"]["prompt"] + r["gateway_upstream_tokens"]["completion"]
        print(
            f"{r['setting']:<28}{r['upstream_requests_for_hits']:>24}{r['prompt_tokens_billed_for_hits']:>15}"
            f"{r['hit_ms']['p50']:>9}/{r['hit_ms']['p99']:<8}{r['miss_ms']['p50']:>9}/{r['miss_ms']['p99']:<8}"
            f"{spent:>15}"
        )
        print(
            f"  {r['hits']} served, {r['calibration_checks']} would-be hits relayed as calibration checks, "
            f"{r['outcome_not_as_planned']} not as planned"
        )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
