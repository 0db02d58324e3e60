"""Scale-out on one machine, as deployed: two `precog gateway serve` replicas and the one
`precog gateway writer` as real processes, a real redis-server with its append-only file, and a stand-in
upstream on loopback (the model is not the point here; tests/gateway/test_gateway_e2e_backend.py runs it).

Replicas serve read-only snapshots and hand write-backs to the writer through a Redis stream; the writer
persists them and publishes new snapshots, which the replicas swap in while serving. The tests run in
file order against one cluster; the fault test kills its parts last.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from precog.gateway.replication.write_queue import WRITEBACKS, WRITER_GROUP, encode_entry
from precog.store import Entry, Source, Store, StoreError, current_snapshot
from tests.gateway.fake_upstream import UpstreamState, create_upstream
from tests.gateway.support import RedisProcess, ServerThread, chat, entries, free_port, wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis"),
]

ROOT = Path(__file__).resolve().parents[2]
ONLY_IF_CACHED = {"x-precog-cache-control": "only-if-cached"}


def _env(**settings: Any) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PRECOG_CONFIG", None)
    env.update({f"PRECOG_GATEWAY_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def _gateway_cli(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`precog gateway ARGS` as its own process, run as `python -m precog.gateway.cli` (the same typer app)
    so that it does not import the backend's engine, which is all that `precog` would add."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "precog.gateway.cli", *args], env=env, cwd=ROOT, stdout=out, stderr=out
        )


@dataclass
class Replica:
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = _gateway_cli("serve", "--port", str(self.port), env=self.env, log=self.log)

    def wait_up(self) -> None:
        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=180)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@dataclass
class Cluster:
    redis: RedisProcess
    upstream: ServerThread
    upstream_state: UpstreamState
    a: Replica
    b: Replica
    writer: subprocess.Popen[bytes]
    store_path: Path
    snapshot_root: Path
    logs: Path
    extra: list[Any] = field(default_factory=list)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("scaleout")
    server = RedisProcess(free_port(), base / "redis")
    server.start()
    state = UpstreamState()
    upstream = ServerThread(create_upstream(state)).start()
    store_path, snapshot_root = base / "store", base / "snapshots"
    common = {"redis_url": server.url, "snapshot_root": snapshot_root}
    writer = _gateway_cli(
        "writer",
        env=_env(store_path=store_path, snapshot_every_s=0.3, **common),
        log=base / "writer.log",
    )
    replica_env = _env(
        store_role="replica",
        upstream_url=upstream.url,
        snapshot_poll_s=0.1,
        snapshot_wait_s=300,
        rate_limit_per_minute=0,
        redis_timeout_s=0.5,
        upstream_retry_backoff_s=0.01,
        breaker_failure_threshold=2,
        breaker_reset_s=1,
        **common,
    )
    a = Replica(free_port(), replica_env, base / "a.log")
    b = Replica(free_port(), replica_env, base / "b.log")
    a.start()
    b.start()
    cluster = Cluster(server, upstream, state, a, b, writer, store_path, snapshot_root, base)
    try:
        a.wait_up()
        b.wait_up()
        yield cluster
    finally:
        a.stop()
        b.stop()
        if writer.poll() is None:
            writer.send_signal(signal.SIGTERM)
            writer.wait(timeout=30)
        upstream.stop()
        server.kill()


def _ask(url: str, question: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=chat(question), headers=headers, timeout=30)


def _cached(url: str, question: str) -> bool:
    return _ask(url, question, **ONLY_IF_CACHED).status_code == 200


def _stored(url: str, question: str) -> bool:
    """In the snapshot this replica serves (not just in the shared tier)."""
    return any(e["query"] == question for e in entries(url, q=question))


def _published(cluster: Cluster, question: str) -> bool | None:
    """Whether the current published snapshot holds `question` (None: it was pruned while we looked)."""
    info = current_snapshot(cluster.snapshot_root)
    if info is None:
        return None
    try:
        with Store.open(info.path, read_only=True, create=False, progress=False) as store:
            return any(e.query == question for e in store.entries(text=question))
    except StoreError:
        return None


def _drop_hot_tier(cluster: Cluster) -> None:
    """Forget the shared exact tier, so a hit can only come from the replica's snapshot."""
    client = cluster.client()
    for key in client.scan_iter(match="precog:exact:*"):
        client.delete(key)


def test_a_write_back_through_one_replica_is_a_hit_on_the_other(cluster: Cluster) -> None:
    question = "Who painted the Mona Lisa?"
    assert _ask(cluster.a.url, question).headers["x-precog-cache"] == "miss"
    wait_for(lambda: _cached(cluster.b.url, question))
    shared = _ask(cluster.b.url, question)
    assert shared.headers["x-precog-cache"] == "hit" and shared.headers["x-precog-tier"] == "shared"
    assert shared.json()["choices"][0]["message"]["content"].startswith("The stored answer to Who painted")

    wait_for(lambda: _stored(cluster.b.url, question), timeout=30)
    _drop_hot_tier(cluster)
    from_snapshot = _ask(cluster.b.url, question)
    assert from_snapshot.headers["x-precog-cache"] == "hit"
    assert from_snapshot.headers["x-precog-tier"] == "exact"


def test_an_invalidation_through_one_replica_stops_hits_on_the_other_within_a_second(
    cluster: Cluster,
) -> None:
    question = "Who discovered penicillin?"
    assert _ask(cluster.b.url, question).headers["x-precog-cache"] == "miss"
    wait_for(lambda: _stored(cluster.a.url, question) and _stored(cluster.b.url, question), timeout=30)
    assert _cached(cluster.b.url, question)

    removed = httpx.post(f"{cluster.a.url}/admin/invalidate", json={"substring": "penicillin"}, timeout=10)
    assert removed.json() == {"invalidated": 1}
    wait_for(lambda: not _cached(cluster.b.url, question), timeout=1.0)
    assert not _cached(cluster.a.url, question)

    # The writer deletes it for good: the next published snapshot no longer has it.
    wait_for(lambda: _published(cluster, question) is False, timeout=30)
    # An answer written after the invalidation is not hidden by it.
    assert _ask(cluster.a.url, question).headers["x-precog-cache"] == "miss"
    wait_for(lambda: _stored(cluster.b.url, question), timeout=30)
    _drop_hot_tier(cluster)
    assert _cached(cluster.b.url, question)


def _stats(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/stats", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_stats_add_up_across_replicas(cluster: Cluster) -> None:
    for i in range(3):
        _ask(cluster.b.url, "Who painted the Mona Lisa?")
        _ask(cluster.a.url, f"What is {i} plus {i}?")

    def adds_up() -> bool:
        local = [_stats(url)["windows"]["1h"] for url in (cluster.a.url, cluster.b.url)]
        total = _stats(cluster.a.url)["shared_tier"]["cluster"]
        return (
            total["replicas"] == 2
            and total["requests"] == sum(w["requests"] for w in local)
            and total.get("hit", 0) == sum(w.get("hit", 0) for w in local)
            and total.get("miss", 0) == sum(w.get("miss", 0) for w in local)
        )

    wait_for(adds_up, timeout=15)
    assert _stats(cluster.b.url)["shared_tier"]["cluster"]["by_tenant"]["default"]["hit"] >= 3


def test_snapshots_swap_in_under_load_without_dropping_a_request(cluster: Cluster) -> None:
    stored = ["Who painted the Mona Lisa?", "Who discovered penicillin?"]
    statuses: list[int] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for question in stored:
                    response = client.post(f"{url}/v1/chat/completions", json=chat(question))
                    statuses.append(response.status_code)
                seen.add(str(client.get(f"{url}/admin/stats").json()["store"]["snapshot"]))

    workers = [
        threading.Thread(target=hammer, args=(url,)) for url in (cluster.b.url,) * 3 + (cluster.a.url,)
    ]
    for worker in workers:
        worker.start()
    try:
        fresh = [f"What is the tallest mountain in range {i}?" for i in range(6)]
        for question in fresh:
            assert _ask(cluster.a.url, question).headers["x-precog-cache"] == "miss"
            time.sleep(0.4)  # spread the write-backs over several snapshots
        wait_for(lambda: all(_stored(cluster.b.url, q) for q in fresh), timeout=30)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {set(statuses)}"
    assert len(seen) >= 2, f"served snapshots during the load: {seen}"
    _drop_hot_tier(cluster)
    assert all(_ask(cluster.b.url, q).headers["x-precog-tier"] == "exact" for q in fresh)


def test_a_killed_writer_loses_nothing_acknowledged(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.redis.url.rsplit("/", 1)[0] + "/1"  # a database of its own on the same server
    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(0)
    written = []
    with client.pipeline(transaction=False) as pipe:
        for i in range(3000):
            entry = Entry(
                scope=f"scope-{i % 7}",
                query=f"question number {i}",
                answer=f"answer {i}",
                embedding=rng.standard_normal(384).astype(np.float32),
                model="test-model",
                source=Source.WRITE_BACK,
            )
            pipe.xadd(WRITEBACKS, encode_entry(entry))  # type: ignore[arg-type]
            written.append(entry.id)
        acknowledged = pipe.execute()
    assert all(acknowledged)
    env = _env(store_path=tmp_path / "store", redis_url=url, writer_batch=20)
    log = tmp_path / "writer.log"

    def group() -> dict[str, Any]:
        groups = client.xinfo_groups(WRITEBACKS)
        return next((g for g in groups if g["name"] == WRITER_GROUP.encode()), {"entries-read": 0})

    writer = _gateway_cli("writer", env=env, log=log)
    wait_for(lambda: (group()["entries-read"] or 0) >= 300, timeout=60)
    writer.kill()
    writer.wait(timeout=10)
    assert (group()["lag"] or 0) > 0, "the writer finished before it could be killed mid-stream"

    writer = _gateway_cli("writer", env=env, log=log)
    wait_for(lambda: group()["lag"] == 0 and group()["pending"] == 0, timeout=60)
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=30) == 0, log.read_text()[-3000:]

    with Store.open(tmp_path / "store", read_only=True, create=False, progress=False) as store:
        ids = [e.id for e in store.entries(limit=10_000)]
        assert store.verify().ok
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == set(written)


def test_faults_backend_redis_and_a_replica(cluster: Cluster) -> None:
    a, b, known = cluster.a, cluster.b, "Who painted the Mona Lisa?"

    # The backend dies: clean OpenAI-style 502s, then the breaker opens (503), stored answers still served.
    port = cluster.upstream.port
    cluster.upstream.stop()
    failed = _ask(a.url, "What is the boiling point of water?")
    assert failed.status_code == 502
    assert failed.json()["error"]["type"] == "server_error"
    assert failed.json()["error"]["code"] == "upstream_unreachable"
    _ask(a.url, "What is the freezing point of water?")
    opened = _ask(a.url, "What is the melting point of iron?")
    assert opened.status_code == 503 and opened.json()["error"]["code"] == "upstream_circuit_open"
    assert "precog_gateway_breaker_state 2.0" in httpx.get(f"{a.url}/metrics", timeout=10).text
    assert _ask(a.url, known).headers["x-precog-cache"] == "hit"
    cluster.upstream = ServerThread(create_upstream(cluster.upstream_state), port=port).start()
    wait_for(lambda: _ask(a.url, "What is the boiling point of water?").status_code == 200, timeout=15)

    # Redis dies (kill -9): both replicas keep serving from their snapshots and the upstream.
    cluster.redis.kill()
    for url in (a.url, b.url):
        assert _ask(url, known).headers["x-precog-cache"] == "hit"
        assert _ask(url, f"How deep is lake number {url[-5:]}?").status_code == 200
    wait_for(lambda: not _stats(a.url)["shared_tier"]["up"])
    refused = httpx.post(f"{a.url}/admin/invalidate", json={"substring": "Mona"}, timeout=10)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shared_tier_down"
    cluster.redis.start()
    wait_for(lambda: _stats(a.url)["shared_tier"]["up"] and _stats(b.url)["shared_tier"]["up"], timeout=15)
    assert _ask(a.url, "Who wrote Hamlet?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: _stored(b.url, "Who wrote Hamlet?"), timeout=30)

    # A replica is killed -9: the other keeps serving; the restarted one serves again; stores verify.
    a.stop(signal.SIGKILL)
    assert all(_ask(b.url, known).status_code == 200 for _ in range(5))
    a.start()
    a.wait_up()
    assert _ask(a.url, known).headers["x-precog-cache"] == "hit"
    snapshot = current_snapshot(cluster.snapshot_root)
    assert snapshot is not None
    for path in (snapshot.path, cluster.store_path):  # what `precog store verify` runs, read-only
        with Store.open(path, read_only=True, create=False, progress=False) as store:
            report = store.verify()
            assert report.ok, report.summary()
