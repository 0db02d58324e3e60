"""Helper process of the kill -9 test: forks one writer per round, on demand, from a warm interpreter.

stdin: "ROUND" starts a writer and answers its pid; "reap" waits for the (killed) writer to be gone and
answers "reaped". Until it is killed, each writer appends to acks/ROUND.txt "P <id>" after a put
returns, "d <id>" before a delete and "D <id>" after it returns (line-buffered: a line is in the kernel
as soon as the call it acknowledges has returned).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from precog.store import Entry, KVBlob, Store


def expected_entry(round_no: int, item: int) -> tuple[Entry, KVBlob | None]:
    vector = np.random.default_rng(round_no * 1_000_003 + item).standard_normal(384).astype(np.float32)
    entry = Entry(
        scope=f"scope-{item % 3}",
        query=f"round {round_no} item {item}",
        answer=f"answer {round_no}-{item} " + "x" * (item % 7) * 300,
        embedding=vector,
        model="m",
        id=f"r{round_no}-i{item}",
    )
    blob = None
    if item % 3 == 0:
        tokens = 16 + item % 5
        blob = KVBlob(
            model="m",
            token_ids=list(range(item * 100, item * 100 + tokens)),  # KV is a function of its tokens
            keys=[torch.full((2, tokens, 8), float(item)) for _ in range(2)],
            values=[torch.full((2, tokens, 8), float(-item)) for _ in range(2)],
        )
    return entry, blob


def write_until_killed(store_path: Path, acks: Path) -> None:
    round_no = int(acks.stem)
    with Store.open(store_path, progress=False) as store, open(acks, "w", buffering=1) as out:
        item = 0
        while True:
            entry, blob = expected_entry(round_no, item)
            store.put(entry, blob)
            out.write(f"P {entry.id}\n")
            if item % 5 == 4:
                victim = f"r{round_no}-i{item - 2}"
                out.write(f"d {victim}\n")
                store.delete(victim)
                out.write(f"D {victim}\n")
            item += 1


def main() -> None:
    store_path, ack_dir = Path(sys.argv[1]), Path(sys.argv[2])
    for line in sys.stdin:
        if line.strip() == "reap":
            os.wait()
            print("reaped", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            write_until_killed(store_path, ack_dir / f"{int(line)}.txt")
            os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
