"""The single-node gateway keeps every write-back it acknowledged through kill -9, and serves a
write-back from its store as soon as it is acknowledged (bench/writeback_bench.py times both)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.gateway.kill_rounds import Gateway, kill_round, searchable_delays
from tests.gateway.support import ServerThread


def test_acknowledged_write_backs_survive_kill_9(tmp_path: Path, upstream: ServerThread) -> None:
    seed = int(os.environ.get("PRECOG_KILL_SEED", random.randrange(2**32)))
    rounds = int(os.environ.get("PRECOG_KILL_ROUNDS", "3"))
    print(f"kill -9 rounds: {rounds}, seed {seed} (PRECOG_KILL_SEED reruns it)")
    rng = random.Random(seed)
    acknowledged = 0
    for round_no in range(rounds):
        result = kill_round(tmp_path / "store", upstream.url, round_no, rng)
        assert result.lost == [], f"seed {seed}, round {round_no}: acknowledged write-backs lost"
        acknowledged += len(result.acknowledged)
    assert acknowledged > 0, "no write-back was acknowledged before the kills: the test proved nothing"


def test_a_write_back_is_served_from_the_store_once_acknowledged(
    tmp_path: Path, upstream: ServerThread
) -> None:
    gateway = Gateway(tmp_path / "store", upstream.url)
    try:
        assert len(searchable_delays(gateway.url, 5)) == 5
    finally:
        gateway.stop()
    assert len(gateway.acknowledged) == 5
