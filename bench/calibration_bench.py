"""The false-hit bound on a labelled stream: the gateway's calibrator against fixed thresholds, same events.

    .venv/bin/python bench/calibration_bench.py [--epochs 5] [--delta 0.01] [--floor 0.85] [--seed 1]

Events: the guard's held-out fow-cache question pairs (seed 0, 240 pairs, never used to fit the
classifier; its word lists were written while reading all 600, see #19) and the 240 conversation pairs.
Each pair is its own scope holding its `a`; the stream asks each `b` once per epoch, shuffled, as repeat
users would. A conversation pair whose earlier turns differ has another scope, so it can only miss.

Each ask goes through the question tier's decision as `precog.gateway.lookup` makes it: cosine at least
the similarity floor, the guard's verdict (vetoes fail closed), then `precog.gateway.calibration`
(serve / verify / explore / refuse). A relayed check learns from the label, which stands in for
comparing the stand-in upstream's fresh answer with the stored one (same answer iff `same_answer`).
`check_new_entries` (a second replay) also relays each entry's first would-be hit.
Fixed baselines decide each event the same way every epoch: the guard's P(same) at a fixed threshold
(behind the same floor and vetoes) and plain cosine at a fixed threshold, the best of each chosen in
hindsight. false-hit rate = wrong answers served / answers served (95% Wilson intervals).
Writes bench/results/calibration.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "calibration.json"
sys.path.insert(0, str(ROOT))

from precog.gateway.calibration import (  # noqa: E402
    CalibrationPolicy,
    Calibrator,
    Candidate,
    wilson_interval,
)


@dataclass(frozen=True, slots=True)
class Event:
    """One labelled ask: its pair, the cosine to the stored question, the guard's verdict."""

    pair: str
    same_answer: bool
    cosine: float
    score: float
    accepted: bool
    vetoed: bool
    shares_scope: bool


def events() -> list[Event]:
    """The held-out question pairs and the conversation pairs, judged once by the shipped guard."""
    from fow_cache import load_conversations

    from precog.gateway.guard import Guard
    from precog.gateway.guard.train import split_with_cosines
    from precog.store import Embedder, Turn, scope_key

    embedder, guard = Embedder(), Guard()
    _, _, test_pairs, test_cosines = split_with_cosines(seed=0, embedder=embedder)
    triples = [(p.query, p.candidate, float(c)) for p, c in zip(test_pairs, test_cosines, strict=True)]
    labels = [p.same_answer for p in test_pairs]
    ids = [f"q:{p.id}" for p in test_pairs]
    shares = [True] * len(test_pairs)

    def scope(messages: list[dict[str, str]]) -> str:
        return scope_key("bench-model", "", "bench", [Turn(m["role"], m["content"]) for m in messages[:-1]])

    conversations = load_conversations()
    last_a = [c["a"][-1]["content"] for c in conversations]
    last_b = [c["b"][-1]["content"] for c in conversations]
    vectors_a, vectors_b = embedder.encode(last_a), embedder.encode(last_b)
    for n, item in enumerate(conversations):
        triples.append((last_b[n], last_a[n], float(vectors_a[n] @ vectors_b[n])))
        labels.append(bool(item["same_answer"]))
        ids.append(f"c:{n}")
        shares.append(scope(item["a"]) == scope(item["b"]))
    verdicts = guard.check_many(triples)
    return [
        Event(pair, label, cosine, v.score, v.accept, v.veto, share)
        for pair, label, (_, _, cosine), v, share in zip(ids, labels, triples, verdicts, shares, strict=True)
    ]


@dataclass(slots=True)
class Tally:
    requests: int = 0
    served: int = 0
    wrong: int = 0
    checks: int = 0

    def row(self) -> dict[str, Any]:
        low, high = wilson_interval(self.wrong, self.served) or (0.0, 1.0)
        return {
            "requests": self.requests,
            "served": self.served,
            "wrong": self.wrong,
            "checks": self.checks,
            "false_hit_rate": self.wrong / self.served if self.served else None,
            "interval": [low, high],
            "wrong_per_request": self.wrong / self.requests if self.requests else None,
        }


def replay(
    stream: list[Event], epochs: int, delta: float, floor: float, seed: int, check_new: bool = False
) -> dict[str, Any]:
    """The calibrator deciding every ask, learning from each check's label; a tally per epoch."""
    from precog.gateway.guard import Guard

    policy = CalibrationPolicy(max_false_hit_rate=delta, check_new_entries=check_new)
    calibrator = Calibrator(policy, {"semantic": Guard().threshold})
    rng = random.Random(seed)
    per_epoch, total = [], Tally()
    for _ in range(epochs):
        order = stream[:]
        rng.shuffle(order)
        tally = Tally()
        for event in order:
            tally.requests += 1
            if not event.shares_scope or event.cosine < floor:
                continue
            candidate = Candidate("bench", "semantic", event.pair, event.score, event.accepted, event.vetoed)
            judgement = calibrator.judge(candidate)
            if judgement.decision == "serve":
                tally.served += 1
                tally.wrong += not event.same_answer
            elif judgement.checks:
                tally.checks += 1
                calibrator.observe(judgement, agreed=event.same_answer)
        per_epoch.append(tally.row())
        for name in ("requests", "served", "wrong", "checks"):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
    estimate = calibrator.tenant_estimate("bench")
    return {
        "per_epoch": per_epoch,
        "total": total.row(),
        "estimate": {
            "expected_false_hit_rate": estimate.expected_false_hit_rate,
            "verified": estimate.verified,
            "verified_false": estimate.verified_false,
            "verified_interval": estimate.verified_interval,
        },
    }


def fixed(stream: list[Event], epochs: int, floor: float) -> dict[str, list[dict[str, Any]]]:
    """Every fixed threshold of the guard's score (behind the floor and vetoes) and of plain cosine."""

    def sweep(served_at: Any, thresholds: list[float]) -> list[dict[str, Any]]:
        rows = []
        for threshold in thresholds:
            served = [e for e in stream if e.shares_scope and served_at(e, threshold)]
            tally = Tally(
                requests=len(stream) * epochs,
                served=len(served) * epochs,
                wrong=sum(not e.same_answer for e in served) * epochs,
            )
            rows.append({"threshold": threshold, **tally.row()})
        return rows

    scores = sorted({round(e.score, 4) for e in stream})
    cosines = sorted({round(e.cosine, 3) for e in stream if e.shares_scope})
    return {
        "guard": sweep(lambda e, t: e.cosine >= floor and not e.vetoed and e.score >= t, scores),
        "plain_cosine": sweep(lambda e, t: e.cosine >= t, cosines),
    }


def best_within(rows: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    """The fixed threshold with the most answers served whose false-hit rate stays within `rate`."""
    fitting = [r for r in rows if r["served"] and r["false_hit_rate"] <= rate]
    return max(fitting, key=lambda r: (r["served"], -r["threshold"]), default=None)


def print_table(results: dict[str, Any]) -> None:
    calibrated = results["calibrated"]
    print(
        f"\n{results['events']} events a pass ({results['sharing_scope']} with a candidate in scope), "
        f"{results['epochs']} passes, δ = {results['delta']:.1%}, similarity floor {results['floor']}; "
        f"{results['should_hit']} should-hit asks a pass"
    )
    print(f"{'':<34}{'served':>8}{'wrong':>7}{'false-hit rate (95% CI)':>28}{'checks':>8}")

    def line(name: str, row: dict[str, Any] | None) -> None:
        if row is None:
            print(f"{name:<34}{'none fits':>8}")
            return
        rate = row["false_hit_rate"]
        cell = "-" if rate is None else f"{rate:.2%} ({row['interval'][0]:.2%}-{row['interval'][1]:.2%})"
        print(f"{name:<34}{row['served']:>8}{row['wrong']:>7}{cell:>28}{row.get('checks', 0):>8}")

    for n, row in enumerate(calibrated["per_epoch"], 1):
        line(f"calibrated, pass {n}", row)
    line("calibrated, all passes", calibrated["total"])
    checked_new = results["calibrated_check_new_entries"]
    for n, row in enumerate(checked_new["per_epoch"], 1):
        line(f"  + check_new_entries, pass {n}", row)
    line("  + check_new_entries, all passes", checked_new["total"])
    for name, row in results["best_fixed"].items():
        line(name, row)
    ratio = results["hits_vs_best_fixed_guard"]
    print(f"\nhits, calibrated / best fixed guard threshold at the same rate: {ratio}")
    print(f"calibrator's own estimate: {calibrated['estimate']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--delta", type=float, default=0.01)
    parser.add_argument("--floor", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    stream = events()
    calibrated = replay(stream, args.epochs, args.delta, args.floor, args.seed)
    checked_new = replay(stream, args.epochs, args.delta, args.floor, args.seed, check_new=True)
    sweeps = fixed(stream, args.epochs, args.floor)
    measured = calibrated["total"]["false_hit_rate"] or 0.0
    same_rate = max(measured, 0.0)
    best = {
        f"best fixed guard, rate <= {same_rate:.2%}": best_within(sweeps["guard"], same_rate),
        f"best fixed guard, rate <= {args.delta:.0%}": best_within(sweeps["guard"], args.delta),
        f"best plain cosine, rate <= {args.delta:.0%}": best_within(sweeps["plain_cosine"], args.delta),
    }
    peer = next(iter(best.values()))
    results = {
        "events": len(stream),
        "sharing_scope": sum(e.shares_scope for e in stream),
        "should_hit": sum(e.same_answer for e in stream),
        "epochs": args.epochs,
        "delta": args.delta,
        "floor": args.floor,
        "seed": args.seed,
        "calibrated": calibrated,
        "calibrated_check_new_entries": checked_new,
        "best_fixed": best,
        "hits_vs_best_fixed_guard": (
            round(calibrated["total"]["served"] / peer["served"], 3) if peer and peer["served"] else None
        ),
        "sweeps": sweeps,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
