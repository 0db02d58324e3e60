"""kill -9 at random moments never loses an acknowledged write nor leaves half an entry;
a full disk refuses writes cleanly and leaves the store as it was."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from store_crash_writer import expected_entry

from precog.store import Store

HERE = Path(__file__).parent
ROUNDS = 30


def _acks(path: Path) -> list[tuple[str, str]]:
    """Complete lines only: a line cut by the kill was never acknowledged."""
    text = path.read_text() if path.exists() else ""
    return [tuple(line.split(" ", 1)) for line in text.split("\n")[:-1]]  # type: ignore[misc]


def _check_acknowledged(store: Store, puts: set[str], deletes: set[str], maybe_deleted: set[str]) -> None:
    """Acknowledged puts are there and complete; a delete cut short by a kill may or may not have happened."""
    for entry_id in puts - deletes - maybe_deleted:
        got = store.get(entry_id)
        assert got is not None, f"acknowledged entry {entry_id} was lost"
        round_no, item = (int(part[1:]) for part in entry_id.split("-"))
        want, blob = expected_entry(round_no, item)
        assert (got.query, got.answer, got.scope) == (want.query, want.answer, want.scope)
        np.testing.assert_allclose(got.embedding, want.embedding / np.linalg.norm(want.embedding), atol=1e-6)
        if blob is not None:
            stored = store.get_blob(got.kv_blob_id)
            assert stored.token_ids == blob.token_ids and float(stored.keys[0][0, 0, 0]) == item
    for entry_id in deletes:
        assert store.get(entry_id) is None, f"acknowledged delete of {entry_id} was undone"


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store_path, ack_dir = tmp_path / "store", tmp_path / "acks"
    ack_dir.mkdir()
    zygote = subprocess.Popen(
        [sys.executable, str(HERE / "store_crash_writer.py"), str(store_path), str(ack_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
    )
    chance = random.Random(20261129)
    puts: set[str] = set()
    deletes: set[str] = set()
    maybe_deleted: set[str] = set()
    try:
        for round_no in range(ROUNDS):
            zygote.stdin.write(f"{round_no}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(chance.uniform(0.02, 0.4))
            os.kill(pid, signal.SIGKILL)
            zygote.stdin.write("reap\n")
            zygote.stdin.flush()
            assert zygote.stdout.readline().strip() == "reaped"
            round_puts: set[str] = set()
            for kind, entry_id in _acks(ack_dir / f"{round_no}.txt"):
                {"P": round_puts, "D": deletes, "d": maybe_deleted}[kind].add(entry_id)
            puts |= round_puts
            maybe_deleted -= deletes
            with Store.open(store_path, progress=False) as store:
                _check_acknowledged(store, round_puts, deletes & round_puts, maybe_deleted & round_puts)
                if round_no % 5 == 4:
                    report = store.verify()
                    assert report.ok, report.summary()
        with Store.open(store_path, progress=False) as store:
            _check_acknowledged(store, puts, deletes, maybe_deleted)
            report = store.verify()
            assert report.ok, report.summary()
    finally:
        zygote.kill()
        zygote.wait()
    assert len(puts) > ROUNDS, "the writer was killed before it could write anything"


def test_full_disk_refuses_the_write_and_keeps_the_store(tmp_path: Path, make_entry) -> None:
    store_path = tmp_path / "store"
    with Store.open(store_path, progress=False) as store:
        kept = [make_entry() for _ in range(20)]
        store.put_many(kept)
    writer = textwrap.dedent(
        """
        import resource, signal, sys
        import numpy as np, torch
        from precog.store import Entry, KVBlob, Store, StoreWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = Store.open(sys.argv[1], progress=False)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        blob = KVBlob(model="m", token_ids=list(range(512)), keys=[torch.randn(4, 512, 64)],
                      values=[torch.randn(4, 512, 64)])
        for i in range(100):
            entry = Entry(scope="scope-a", query=f"big {i}", answer="a", model="m",
                          embedding=np.random.default_rng(i).standard_normal(384))
            try:
                store.put(entry, blob)
            except StoreWriteError as exc:
                print("REFUSED", exc, flush=True)
                break
            print("ACK", entry.id, flush=True)
        store.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", writer, str(store_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("REFUSED") and "nothing of it was stored" in line for line in lines), (
        result.stdout + result.stderr
    )
    acked = [line.split()[1] for line in lines if line.startswith("ACK")]
    with Store.open(store_path, progress=False) as store:
        for entry in kept:
            assert store.get(entry.id) is not None
        for entry_id in acked:
            assert store.get_blob(store.get(entry_id).kv_blob_id).token_ids == list(range(512))
        assert len(store) == len(kept) + len(acked)
        report = store.verify()
        assert report.ok, report.summary()
