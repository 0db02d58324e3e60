"""Store benchmark: insert rate, top-10 search latency inside a scope, open/recovery time, bytes per
entry, and the approximate index's recall@10 against exact search over the same scope (the peer).

Synthetic 384-d vectors shaped like sentence embeddings: a 64-d latent projected to 384-d plus noise,
L2-normalised (uniform random vectors have no neighbourhood structure and are unlike any real corpus).
Queries are perturbed stored vectors, i.e. paraphrases of stored questions.

    python bench/store_bench.py                 # 10K and 100K entries in one scope
    python bench/store_bench.py --million       # also 1M entries: 100 scopes of 10K each
Writes bench/results/store.json and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from precog.store import Entry, IndexParams, Store

DIM = 384
LATENT = 64
QUERIES = 1000
BATCH = 1000
RESULTS = Path(__file__).parent / "results" / "store.json"


@dataclass(frozen=True)
class Case:
    name: str
    entries: int
    scopes: int


def synthetic(rng: np.random.Generator, projection: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    latent = rng.standard_normal((n, LATENT)).astype(np.float32)
    vectors = latent @ projection + 0.1 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), latent


def queries_near(rng: np.random.Generator, projection: np.ndarray, latent: np.ndarray) -> np.ndarray:
    picked = latent[rng.choice(len(latent), QUERIES, replace=False)]
    moved = (picked + 0.3 * rng.standard_normal(picked.shape).astype(np.float32)) @ projection
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


OPEN_PROBE = """
import json, sys, time
from pathlib import Path
from precog.store import Store

def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024

before = rss()
began = time.perf_counter()
store = Store.open(sys.argv[1], progress=False)
seconds = time.perf_counter() - began
print(json.dumps([seconds, rss() - before]))
store.close()
"""


CRASHING_WRITER = """
import os, signal, sys
import numpy as np
from precog.store import Entry, Store

store = Store.open(sys.argv[1], progress=False)
vectors = np.random.default_rng(11).standard_normal((1000, 384)).astype(np.float32)
for i, vector in enumerate(vectors):
    store.put(Entry(scope="scope-0", query=f"late {i}", answer="a", embedding=vector, model="bench-model"))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _bench_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def crash_after_unsaved_writes(path: Path) -> None:
    """A writer that commits 1,000 more puts (not counted in `entries`) and is killed before it can
    save the index; the next open catches up from the change log."""
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], env=_bench_env(), check=False)


def open_in_fresh_process(path: Path) -> tuple[float, int]:
    """Open time and resident memory the open adds, in a new process (as a gateway replica starts)."""
    probe = subprocess.run(
        [sys.executable, "-c", OPEN_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=_bench_env(),
    )
    seconds, rss = json.loads(probe.stdout.splitlines()[-1])
    return float(seconds), int(rss)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000)


def run_case(
    case: Case, root: Path, rng: np.random.Generator, projection: np.ndarray
) -> dict[str, float | str]:
    path = root / case.name
    per_scope = case.entries // case.scopes
    console = Console(stderr=True)
    console.print(f"[bold]{case.name}[/bold]: {case.entries:,} entries in {case.scopes} scope(s)")

    store = Store.open(path, progress=False)
    insert_seconds = 0.0
    probe_vectors: np.ndarray | None = None
    probe_latent: np.ndarray | None = None
    for scope_no in range(case.scopes):
        vectors, latent = synthetic(rng, projection, per_scope)
        if scope_no == 0:
            probe_vectors, probe_latent = vectors, latent
        for start in range(0, per_scope, BATCH):
            batch = [
                Entry(
                    scope=f"scope-{scope_no}",
                    query=f"question {scope_no}-{start + i}",
                    answer=f"answer {scope_no}-{start + i} " + "lorem ipsum " * 20,
                    embedding=vector,
                    model="bench-model",
                )
                for i, vector in enumerate(vectors[start : start + BATCH])
            ]
            began = time.perf_counter()
            store.put_many(batch)
            insert_seconds += time.perf_counter() - began
        if case.scopes > 1 and scope_no % 10 == 9:
            console.print(f"  inserted {scope_no + 1} scopes")
    assert probe_vectors is not None and probe_latent is not None

    single = [
        Entry(scope="scope-0", query=f"single {i}", answer="a", embedding=v, model="bench-model")
        for i, v in enumerate(synthetic(rng, projection, 500)[0])
    ]
    began = time.perf_counter()
    for entry in single:
        store.put(entry)
    single_rate = len(single) / (time.perf_counter() - began)
    scope_vectors = np.concatenate([probe_vectors, np.stack([e.embedding for e in single])])
    kind = store.index_info()["scopes"]["scope-0"]["kind"]

    queries = queries_near(rng, projection, probe_latent)
    exact_top = np.argsort(-(queries @ scope_vectors.T), axis=1)[:, :10]
    id_of_row = [f"question 0-{i}" for i in range(per_scope)] + [e.query for e in single]
    latencies, recalls = [], []
    for query, truth in zip(queries, exact_top, strict=True):
        began = time.perf_counter()
        found = store.search("scope-0", query, k=10)
        latencies.append(time.perf_counter() - began)
        recalls.append(len({e.query for e, _ in found} & {id_of_row[i] for i in truth}) / 10)

    flat = faiss.IndexFlatIP(DIM)
    flat.add(scope_vectors)
    flat_latencies = []
    for query in queries:
        began = time.perf_counter()
        flat.search(query.reshape(1, -1), 10)
        flat_latencies.append(time.perf_counter() - began)
    del flat

    index_memory = store.index_info()["memory_bytes"]
    store.close()
    del store
    gc.collect()
    disk = dir_bytes(path)

    open_seconds, rss_open = open_in_fresh_process(path)
    crash_after_unsaved_writes(path)
    catch_up_seconds, _ = open_in_fresh_process(path)

    shutil.rmtree(path / "index")
    began = time.perf_counter()
    store = Store.open(path, progress=False)
    recovery_seconds = time.perf_counter() - began
    store.close()
    shutil.rmtree(path)

    total = case.entries + len(single)
    p50, flat_p50 = percentile_ms(latencies, 50), percentile_ms(flat_latencies, 50)
    return {
        "case": case.name,
        "entries": total,
        "scopes": case.scopes,
        "searched_scope_size": len(scope_vectors),
        "index_kind": kind,
        "insert_per_s_batched": round(case.entries / insert_seconds),
        "insert_per_s_single_put": round(single_rate),
        "search_p50_ms": round(p50, 3),
        "search_p99_ms": round(percentile_ms(latencies, 99), 3),
        "exact_flat_p50_ms": round(flat_p50, 3),
        "speedup_vs_exact": round(flat_p50 / p50, 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "open_s": round(open_seconds, 3),
        "open_after_kill9_s": round(catch_up_seconds, 3),
        "recovery_rebuild_s": round(recovery_seconds, 3),
        "disk_bytes_per_entry": round(disk / total),
        "index_memory_bytes_per_entry": round(index_memory / total),
        "open_rss_bytes_per_entry": round(rss_open / total),
    }


def flat_scan_costs(rng: np.random.Generator, projection: np.ndarray) -> dict[str, float]:
    """Exact-search latency by scope size: where a flat scan stops being cheap (the HNSW threshold)."""
    costs = {}
    for size in (5_000, 10_000, 20_000, 50_000):
        vectors, latent = synthetic(rng, projection, size)
        index = faiss.IndexFlatIP(DIM)
        index.add(vectors)
        samples = []
        for query in queries_near(rng, projection, latent)[:300]:
            began = time.perf_counter()
            index.search(query.reshape(1, -1), 10)
            samples.append(time.perf_counter() - began)
        costs[str(size)] = round(percentile_ms(samples, 50), 3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--million", action="store_true", help="also run 1M entries (100 scopes of 10K)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the stores (default: tmp)")
    args = parser.parse_args()

    faiss.omp_set_num_threads(IndexParams().faiss_threads)  # as the store runs it, also for the peer
    rng = np.random.default_rng(7)
    projection = rng.standard_normal((LATENT, DIM)).astype(np.float32)
    cases = [Case("10K", 10_000, 1), Case("100K", 100_000, 1)]
    if args.million:
        cases.append(Case("1M", 1_000_000, 100))
    rows: list[dict[str, float | str]] = []
    result: dict[str, object] = {
        "machine": {"cpus": os.cpu_count()},
        "index_params": dataclasses.asdict(IndexParams()),
        "targets": {"search_p50_ms_at_100K": 2.0, "recall_at_10_at_100K": 0.95, "open_s_at_100K": 3.0},
        "flat_scan_p50_ms_by_scope_size": flat_scan_costs(rng, projection),
        "cases": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="store-bench-") as tmp:
        for case in cases:
            rows.append(run_case(case, Path(tmp), rng, projection))
            result["load_average"] = os.getloadavg()
            RESULTS.write_text(json.dumps(result, indent=2))

    table = Table(title="store benchmark (search inside one scope, top-10)")
    columns = [key for key in rows[0] if key != "case"]
    table.add_column("case")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(
            str(row["case"]), *(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns)
        )
    console = Console(width=250)
    console.print(table)
    console.print(f"flat (exact) scan p50 ms by scope size: {result['flat_scan_p50_ms_by_scope_size']}")
    console.print(f"load average (1, 5, 15 min) at the end: {result['load_average']}")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
