"""Write-back durability and freshness of the single-node gateway, over real HTTP and real processes.

Durability: N rounds (default 100) of `precog gateway serve` on one store, clients asking new questions,
SIGKILL at a seeded random moment, then the store reopened: how many write-backs the gateway had
acknowledged (logged "write-back stored" after its group commit returned) and how many of those are
missing. Freshness: seconds from a miss's answer reaching the client to the first `only-if-cached` ask of
the same question that is served from the store (p50/p99), with store_sync on (the default: fsync per
group commit) and off (the peer: what the gateway did before), and with 16 clients asking at once (the
load under which the issue saw 1.5 s).

The upstream is the deterministic test server (tests/gateway/fake_upstream.py).

    python bench/writeback_bench.py [--rounds 100] [--asks 200] [--seed 1] [--clients 16]
Writes bench/results/writeback.json and prints a table. Figures are on this machine (CPU, local disk).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.gateway.fake_upstream import UpstreamState, create_upstream
from tests.gateway.kill_rounds import Gateway, kill_round, searchable_delays
from tests.gateway.support import ServerThread

RESULTS = Path(__file__).parent / "results" / "writeback.json"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=16, help="clients asking at once in the loaded row")
    args = parser.parse_args()
    upstream = ServerThread(create_upstream(UpstreamState())).start()
    rng = random.Random(args.seed)
    report: dict[str, object] = {"seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        freshness = {}
        runs = [
            ("sync", True, 1),
            ("no sync", False, 1),
            (f"sync, {args.clients} clients", True, args.clients),
        ]
        for name, sync, clients in runs:
            gateway = Gateway(
                Path(tmp) / f"fresh-{len(freshness)}", upstream.url, {"PRECOG_GATEWAY_STORE_SYNC": str(sync)}
            )
            try:
                delays = searchable_delays(gateway.url, max(1, args.asks // clients), clients=clients)
            finally:
                gateway.stop()
            freshness[name] = {
                "clients": clients,
                "write_backs": len(delays),
                "p50_ms": 1000 * statistics.median(delays),
                "p99_ms": 1000 * pct(delays, 0.99),
                "max_ms": 1000 * max(delays),
            }
        report["searchable_after_answer"] = freshness
        acknowledged = lost = requests = 0
        for round_no in track(range(args.rounds), description="kill -9 rounds"):
            result = kill_round(Path(tmp) / "killed", upstream.url, round_no, rng)
            acknowledged += len(result.acknowledged)
            lost += len(result.lost)
            requests += result.requests
        report["kill_rounds"] = {
            "rounds": args.rounds,
            "requests_answered": requests,
            "write_backs_acknowledged": acknowledged,
            "acknowledged_lost": lost,
        }
    upstream.stop()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    table = Table(title="write-back: searchable after the answer (ms)")
    for column in ("store", "p50", "p99", "max"):
        table.add_column(column, justify="right")
    for name, row in freshness.items():
        table.add_row(name, f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", f"{row['max_ms']:.1f}")
    Console().print(table)
    kills = report["kill_rounds"]
    print(f"kill -9: {kills}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
