"""The single-node gateway under kill -9, and how soon a write-back is served: shared by
test_gateway_durability.py and bench/writeback_bench.py.

A round starts `precog gateway serve` on one store, keeps clients asking new questions (misses, written
back), kills the process with SIGKILL at a seeded moment and reopens the store: every write-back the
gateway logged as stored ("write-back stored", after its group commit returned) must be there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from precog.shell.up import wait_healthy
from precog.store import Store
from tests.gateway.support import free_port

MODEL = "test-model"


@dataclass
class RoundResult:
    acknowledged: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    requests: int = 0


class Gateway:
    """`precog gateway serve` in its own process, with its structured log read line by line."""

    def __init__(self, store: Path, upstream: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.acknowledged: list[str] = []
        self.last_lines: deque[str] = deque(maxlen=20)
        settings = {
            "PRECOG_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
            "PRECOG_GATEWAY_LOG_LEVEL": "info",
            "PRECOG_GATEWAY_PARALLEL_PATH": "false",
        }
        command = ["gateway", "serve", "--port", str(self.port), "--upstream-url", upstream]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "precog", *command, "--store-path", str(store)],
            env={**os.environ, **settings, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            wait_healthy(f"{self.url}/readyz", self.process, timeout=300)  # type: ignore[arg-type]
        except SystemExit as exc:
            self._reader.join(timeout=10)
            raise AssertionError(f"{exc}; its last log lines:\n" + "".join(self.last_lines)) from None

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.last_lines.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("msg") == "write-back stored":
                self.acknowledged.append(record["entry_id"])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self._reader.join(timeout=30)


def ask(client: httpx.Client, url: str, question: str, **headers: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "temperature": 0}
    return client.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def kill_round(
    store: Path, upstream: str, round_no: int, rng: random.Random, clients: int = 4
) -> RoundResult:
    gateway = Gateway(store, upstream)
    result, stop = RoundResult(), threading.Event()

    def client(worker: int) -> None:
        with httpx.Client() as http:
            n = 0
            while not stop.is_set():
                try:
                    ask(http, gateway.url, f"round {round_no} worker {worker} question {n}")
                    result.requests += 1
                except httpx.HTTPError:
                    return  # the gateway is gone
                n += 1

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.2, 2.0))
    gateway.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    result.acknowledged = list(gateway.acknowledged)
    with Store.open(store, progress=False) as reopened:
        result.lost = [entry_id for entry_id in result.acknowledged if reopened.get(entry_id) is None]
        assert reopened.verify().ok
    return result


def searchable_delays(url: str, count: int, prefix: str = "fresh", clients: int = 1) -> list[float]:
    """Seconds from a miss's answer arriving to the first `only-if-cached` ask of it that hits, with
    `clients` clients asking at once (count questions each)."""

    def one_client(client: int) -> list[float]:
        delays = []
        with httpx.Client(timeout=60) as http:
            for n in range(count):
                question = f"{prefix} question {client}-{n}"
                assert ask(http, url, question).status_code == 200
                done = time.perf_counter()
                while (
                    ask(http, url, question, **{"x-precog-cache-control": "only-if-cached"}).status_code
                    != 200
                ):
                    assert time.perf_counter() - done < 30, f"{question!r} was never served from the store"
                    time.sleep(0.005)
                delays.append(time.perf_counter() - done)
        return delays

    with ThreadPoolExecutor(clients) as pool:
        return [delay for delays in pool.map(one_client, range(clients)) for delay in delays]
