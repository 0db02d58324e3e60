"""Load and fault test of a scaled-out precog, all on loopback and bounded in time.

The deployment of precog/gateway/README.md "Scale-out": two `precog gateway serve` replicas (store_role
replica), the one `precog gateway writer`, redis-server with its append-only file, and an upstream; the
load generator is the load balancer (round robin, and on a refused connection the other replica).

1. Ramp: a mixed workload (60% hits on stored questions, 30% misses on new ones, streaming on every
   third request, three tenants with their own API keys) at rising concurrency for a fixed time per level:
   throughput, p50/p99 latency per kind, error rate. The upstream here is a fast OpenAI-compatible
   stand-in (20 ms to the first token), because on a 2-core machine the real model is the bottleneck of
   every miss and would hide the gateway's own limits.
2. Real model: the same mix at low concurrency with `precog backend serve` (SmolLM2-135M) as upstream.
3. Faults, each under load from before the kill until after the recovery: kill -9 the real backend
   (misses must fail as clean OpenAI-style 502/503 JSON, the breaker must open, and close again once the
   backend is back); then, with the stand-in again so that write-backs keep flowing, kill -9 Redis
   (serving must go on) and kill -9 a replica (the other serves; the restarted one serves; `precog store
   verify` passes on the writer's store and on the published snapshot).
4. Nothing acknowledged lost: every write-back that Redis acknowledged (the stream keeps them an hour)
   must be in the writer's store once the writer has caught up.

    .venv/bin/python bench/load_test.py [--quick] [--levels 4,16,64] [--seconds 10]

Writes bench/results/load_test.json (logs, stores and snapshots of the run under
bench/results/load_test_work/) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "load_test.json"
WORK = ROOT / "bench" / "results" / "load_test_work"  # stores, snapshots, Redis files and every log
MODEL = "smollm2-135m-instruct"
TENANTS = {"key-acme": "acme", "key-globex": "globex", "key-initech": "initech"}
ADMIN = {"authorization": "Bearer admin-secret"}
TOPICS = [
    "the Eiffel Tower", "photosynthesis", "black holes", "the Roman Empire", "volcanoes", "DNA",
    "the Moon", "honey bees", "the Nile", "glaciers", "the printing press", "tides",
]  # fmt: skip
WRITEBACKS = "precog:writebacks"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**settings: Any) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PRECOG_CONFIG", None)
    env.update({k: str(v) for k, v in settings.items()})
    return env


@dataclass
class Service:
    """One process of the deployment, restartable on the same port."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=out)
        return self

    def wait_ready(self, timeout: float = 300.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is None or self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(self.ready, timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name} not ready after {timeout:.0f}s; see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


class RedisServer:
    def __init__(self, port: int, data_dir: Path) -> None:
        self.port, self.data_dir = port, data_dir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "everysec", "--dir", str(self.data_dir)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Deployment:
    work: Path
    redis: RedisServer
    upstream_port: int
    writer: Service
    replicas: list[Service]
    store: Path
    snapshots: Path
    upstream: Service | None = None

    def urls(self) -> list[str]:
        return [r.ready.rsplit("/", 1)[0] for r in self.replicas]

    def stand_in(self) -> Service:
        code = (
            "import uvicorn; from tests.gateway.fake_upstream import UpstreamState, create_upstream; "
            "uvicorn.run(create_upstream(UpstreamState(token_delay_s=0.002, delay_s=0.02)), "
            f"host='127.0.0.1', port={self.upstream_port}, log_level='warning')"
        )
        url = f"http://127.0.0.1:{self.upstream_port}"
        return Service(
            "stand-in upstream",
            [sys.executable, "-c", code],
            _env(),
            f"{url}/v1/models",
            self.work / "up.log",
        )

    def backend(self) -> Service:
        argv = [sys.executable, "-m", "precog", "backend", "serve", "--port", str(self.upstream_port)]
        argv += ["--store-path", str(self.work / "backend-store")]
        env = _env(PRECOG_ENGINE_NUM_THREADS=1)
        url = f"http://127.0.0.1:{self.upstream_port}"
        return Service("backend", argv, env, f"{url}/healthz", self.work / "backend.log")

    def switch_upstream(self, service: Service) -> float:
        if self.upstream is not None:
            self.upstream.kill(signal.SIGTERM)
        self.upstream = service.start()
        return service.wait_ready()


@contextmanager
def deployment(work: Path) -> Iterator[Deployment]:
    server = RedisServer(_free_port(), work / "redis")
    server.start()
    upstream_port = _free_port()
    store, snapshots = work / "store", work / "snapshots"
    common = {"PRECOG_GATEWAY_REDIS_URL": server.url, "PRECOG_GATEWAY_SNAPSHOT_ROOT": str(snapshots)}
    writer = Service(
        "writer",
        [sys.executable, "-m", "precog", "gateway", "writer", "--store-path", str(store)],
        _env(PRECOG_GATEWAY_SNAPSHOT_EVERY_S=1, **common),
        "",
        work / "writer.log",
    ).start()
    replicas = []
    for name in ("a", "b"):
        port = _free_port()
        env = _env(
            PRECOG_GATEWAY_STORE_ROLE="replica",
            PRECOG_GATEWAY_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}",
            PRECOG_GATEWAY_MODELS=json.dumps([MODEL]),
            PRECOG_GATEWAY_API_KEYS=json.dumps(TENANTS),
            PRECOG_GATEWAY_ADMIN_TOKEN="admin-secret",
            PRECOG_GATEWAY_RATE_LIMIT_PER_MINUTE=0,
            PRECOG_GATEWAY_REDIS_TIMEOUT_S=0.5,
            PRECOG_GATEWAY_BREAKER_FAILURE_THRESHOLD=3,
            PRECOG_GATEWAY_BREAKER_RESET_S=2,
            PRECOG_GATEWAY_UPSTREAM_READ_TIMEOUT_S=60,
            PRECOG_GATEWAY_LOG_LEVEL="warning",
            PRECOG_GATEWAY_SNAPSHOT_POLL_S=0.5,
            PRECOG_GATEWAY_SNAPSHOT_WAIT_S=600,
            **common,
        )
        argv = [sys.executable, "-m", "precog", "gateway", "serve", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        replicas.append(Service(f"replica {name}", argv, env, f"{url}/healthz", work / f"{name}.log").start())
    deployed = Deployment(work, server, upstream_port, writer, replicas, store, snapshots)
    try:
        yield deployed
    finally:
        for service in [*replicas, writer, *([deployed.upstream] if deployed.upstream else [])]:
            service.kill(signal.SIGTERM)
        server.kill()


# ---- the load ----------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    kind: str  # hit | miss | stream-hit | stream-miss
    status: int  # 0: no HTTP answer at all
    ms: float
    outcome: str = ""
    error: str = ""
    clean_error: bool = True  # a non-200 with an OpenAI-style JSON error body


@dataclass
class Load:
    urls: list[str]
    hot: dict[str, list[str]]
    max_tokens: int
    samples: list[Sample] = field(default_factory=list)
    failovers: int = 0
    missed_questions: list[tuple[str, str]] = field(default_factory=list)  # (tenant, question) served 200
    _next: int = 0

    def _body(self, question: str, stream: bool) -> dict[str, Any]:
        return {
            "model": MODEL,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }

    async def one(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        key = rng.choice(list(TENANTS))
        roll = rng.random()
        stream = rng.random() < 1 / 3
        if roll < 0.6:
            kind, question = "hit", rng.choice(self.hot[TENANTS[key]])
        else:
            kind, question = "miss", f"Tell me one fact about {rng.choice(TOPICS)} (#{uuid.uuid4().hex[:10]})"
        kind = f"stream-{kind}" if stream else kind
        body = self._body(question, stream)
        headers = {"authorization": f"Bearer {key}"}
        start = time.perf_counter()
        sample = Sample(time.time(), kind, 0, 0.0)
        first, self._next = self._next, self._next + 1  # round robin; the others in turn on failure
        for attempt in range(len(self.urls)):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                async with client.stream(
                    "POST", f"{url}/v1/chat/completions", json=body, headers=headers
                ) as response:
                    content = await response.aread()
                sample.status = response.status_code
                sample.outcome = response.headers.get("x-precog-cache", "")
                if response.status_code != 200:
                    sample.error, sample.clean_error = _error_of(content)
                elif stream and b'"error"' in content:
                    sample.status, sample.error = 502, "stream broke off"
                elif "miss" in kind:
                    self.missed_questions.append((TENANTS[key], question))
                break
            except httpx.ConnectError:
                self.failovers += 1  # the load balancer tries the next replica
                continue
            except httpx.HTTPError as exc:
                sample.error, sample.clean_error = f"{type(exc).__name__}", False
                break
        sample.ms = (time.perf_counter() - start) * 1000
        self.samples.append(sample)

    async def run(
        self, clients: int, seconds: float, seed: int, stop: asyncio.Event | None = None
    ) -> list[Sample]:
        """`clients` closed-loop clients for `seconds`, or until `stop` is set when one is given."""
        first = len(self.samples)
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def worker(n: int) -> None:
                rng = random.Random(seed * 1000 + n)
                while not stop.is_set() if stop is not None else time.monotonic() < deadline:
                    await self.one(client, rng)

            await asyncio.gather(*(worker(n) for n in range(clients)))
        return self.samples[first:]


def _error_of(content: bytes) -> tuple[str, bool]:
    try:
        error = json.loads(content)["error"]
        return f"{error.get('code') or error.get('type')}", bool(error.get("message") and error.get("type"))
    except (ValueError, KeyError, TypeError):
        return content[:80].decode(errors="replace"), False


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def summarise(samples: list[Sample], seconds: float) -> dict[str, Any]:
    ok = [s for s in samples if s.status == 200]
    errors = [s for s in samples if s.status != 200]
    by_kind = {}
    for kind in ("hit", "miss", "stream-hit", "stream-miss"):
        mine = [s.ms for s in ok if s.kind == kind]
        by_kind[kind] = {"n": len(mine), "p50_ms": _pct(mine, 0.5), "p99_ms": _pct(mine, 0.99)}
    served_hits = sum(1 for s in ok if s.outcome == "hit")
    return {
        "requests": len(samples),
        "throughput_rps": round(len(samples) / seconds, 1),
        "p50_ms": _pct([s.ms for s in ok], 0.5),
        "p99_ms": _pct([s.ms for s in ok], 0.99),
        "error_rate": round(len(errors) / len(samples), 4) if samples else None,
        "errors": dict(Counter(s.error or str(s.status) for s in errors)),
        "unclean_errors": sum(1 for s in errors if not s.clean_error),
        "hit_share": round(served_hits / len(ok), 3) if ok else None,
        "by_kind": by_kind,
    }


# ---- phases ------------------------------------------------------------------------------------


def _admin(url: str, path: str) -> Any:
    response = httpx.get(f"{url}{path}", headers=ADMIN, timeout=10)
    response.raise_for_status()
    return response.json() if path != "/metrics" else response.text


async def seed(d: Deployment, per_tenant: int) -> dict[str, list[str]]:
    """Ask each tenant's hot questions once (misses, written back), then wait for the snapshot."""
    hot = {
        t: [f"What should I know about {topic}?" for topic in TOPICS[:per_tenant]] for t in TENANTS.values()
    }
    load = Load(d.urls(), hot, max_tokens=48)
    async with httpx.AsyncClient(timeout=120) as client:
        for key, tenant in TENANTS.items():
            for question in hot[tenant]:
                body = load._body(question, False)
                response = await client.post(
                    f"{d.urls()[0]}/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                )
                response.raise_for_status()
    want = per_tenant * len(TENANTS)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(_admin(url, "/admin/stats")["store"]["entries"] >= want for url in d.urls()):
            return hot
        await asyncio.sleep(0.5)
    raise SystemExit("the seeded entries never reached the replicas' snapshots")


def _breaker(url: str) -> float:
    for line in _admin(url, "/metrics").splitlines():
        if line.startswith("precog_gateway_breaker_state "):
            return float(line.split()[1])
    return -1.0


async def _during(load: Load, clients: int, seed_: int, action: Any) -> tuple[list[Sample], float, Any]:
    """Keep the load on from a little before `action` (blocking, run in a thread) until a little after
    it returns: the fault, its effects and the recovery all happen under load."""
    stop = asyncio.Event()
    began = time.monotonic()
    runner = asyncio.create_task(load.run(clients, 0.0, seed_, stop))
    await asyncio.sleep(2.0)
    result = await asyncio.to_thread(action)
    await asyncio.sleep(2.0)
    stop.set()
    samples = await runner
    return samples, time.monotonic() - began, result


def _wait(predicate: Any, timeout: float, step: float = 0.3) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return round(time.monotonic() - started, 2)
        except (httpx.HTTPError, KeyError, redis.RedisError):
            pass
        time.sleep(step)
    return None


def _miss_ok(url: str) -> bool:
    """One new question answered through `url` (what closes a half-open breaker)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say hello (#{uuid.uuid4().hex[:8]})"}],
        "max_tokens": 4,
    }
    headers = {"authorization": f"Bearer {next(iter(TENANTS))}"}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    return response.status_code == 200


def fault_backend(d: Deployment, hold_s: float) -> dict[str, Any]:
    assert d.upstream is not None
    backend = d.upstream
    backend.kill(signal.SIGKILL)
    opened = _wait(lambda: _breaker(d.urls()[0]) == 2.0 or _breaker(d.urls()[1]) == 2.0, 60)
    time.sleep(hold_s)  # misses fail fast while the breaker is open
    restart = time.monotonic()
    d.upstream = backend.start()
    backend.wait_ready()
    ready = round(time.monotonic() - restart, 1)
    recovered = _wait(lambda: all(_miss_ok(u) for u in d.urls()), 120, step=1.0)
    closed = all(_breaker(u) == 0.0 for u in d.urls())
    return {
        "breaker_opened_after_s": opened,
        "backend_restart_s": ready,
        "misses_served_again_after_s": recovered,
        "breaker_closed": closed,
    }


def fault_redis(d: Deployment, hold_s: float) -> dict[str, Any]:
    d.redis.kill()
    down = _wait(lambda: not _admin(d.urls()[0], "/admin/stats")["shared_tier"]["up"], 30)
    time.sleep(hold_s)  # serve a while without Redis
    d.redis.start()
    up = _wait(lambda: all(_admin(u, "/admin/stats")["shared_tier"]["up"] for u in d.urls()), 60)
    return {"tier_marked_down_after_s": down, "tier_up_after_restart_s": up}


def fault_replica(d: Deployment, hold_s: float) -> dict[str, Any]:
    victim, other = d.replicas
    victim.kill(signal.SIGKILL)
    time.sleep(hold_s)  # the other replica alone
    victim.start()
    restart = victim.wait_ready()
    alive = other.proc is not None and other.proc.poll() is None
    return {"replica_restart_s": round(restart, 1), "other_replica_alive": alive}


def verify(d: Deployment) -> dict[str, Any]:
    results = {}
    current = d.snapshots / "current"
    for name, path in (("writer_store", d.store), ("current_snapshot", current.resolve())):
        run = subprocess.run(
            [sys.executable, "-m", "precog", "store", "verify", "--store", str(path), "--json"],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            timeout=300,
        )
        report = json.loads(run.stdout) if run.stdout.strip().startswith(b"{") else {}
        results[name] = {
            "exit_code": run.returncode,
            "ok": report.get("ok"),
            "entries": report.get("entries"),
        }
    return results


def acknowledged_check(d: Deployment, answered_misses: int) -> dict[str, Any]:
    """Wait for the writer to catch up, then look for every acknowledged write-back in its store."""
    client = redis.Redis.from_url(d.redis.url)

    def caught_up() -> bool:
        group = next(g for g in client.xinfo_groups(WRITEBACKS) if g["name"] == b"store-writer")
        return bool(group["pending"] == 0 and (group["lag"] or 0) == 0)

    waited = _wait(caught_up, 120)
    stream: Any = client.xrange(WRITEBACKS)
    acknowledged = [json.loads(fields[b"entry"])["id"] for _, fields in stream]
    code = (
        "import json, sys; from precog.store import Store\n"
        f"with Store.open({str(d.store)!r}, read_only=True, create=False, progress=False) as s:\n"
        "    ids = json.load(sys.stdin); print(json.dumps([i for i in ids if s.get(i) is None]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(acknowledged).encode(),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    missing = json.loads(run.stdout)
    return {
        "writer_caught_up_after_s": waited,
        "answered_misses": answered_misses,
        "acknowledged_writebacks": len(acknowledged),
        "unique_acknowledged": len(set(acknowledged)),
        "lost": len(missing),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"quick": args.quick, "machine": {"cpus": os.cpu_count()}}
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with deployment(WORK) as d:
        started = time.monotonic()
        report["stand_in_upstream_start_s"] = round(d.switch_upstream(d.stand_in()), 1)
        for replica in d.replicas:
            replica.wait_ready()
        report["deploy_s"] = round(time.monotonic() - started, 1)
        report["load_average_at_start"] = os.getloadavg()
        print(f"deployed in {report['deploy_s']}s; logs in {WORK}", flush=True)
        hot = await seed(d, args.hot)
        load = Load(d.urls(), hot, max_tokens=48)
        ramp = []
        for level, clients in enumerate(args.levels):
            samples = await load.run(clients, args.seconds, seed=level)
            ramp.append({"clients": clients, **summarise(samples, args.seconds)})
            print(f"stand-in, {clients} clients: {ramp[-1]['throughput_rps']} req/s", flush=True)
        report["ramp_stand_in"] = ramp

        report["backend_start_s"] = round(d.switch_upstream(d.backend()), 1)
        real = Load(d.urls(), hot, max_tokens=args.max_tokens)
        samples = await real.run(args.real_clients, args.real_seconds, seed=99)
        report["real_backend"] = {"clients": args.real_clients, **summarise(samples, args.real_seconds)}
        print(f"real backend: {report['real_backend']['throughput_rps']} req/s", flush=True)

        faults = {}
        samples, seconds, info = await _during(
            real, args.real_clients, 7, lambda: fault_backend(d, args.fault_hold_s)
        )
        faults["backend"] = {**info, "clients": args.real_clients, "load": summarise(samples, seconds)}
        print(f"fault backend: {info}", flush=True)
        # Redis and a replica die under the stand-in's load: fast misses keep write-backs flowing, so the
        # check below covers write-backs acknowledged right before Redis was killed.
        report["stand_in_restart_s"] = round(d.switch_upstream(d.stand_in()), 1)
        for name, action in (("redis", fault_redis), ("replica", fault_replica)):
            samples, seconds, info = await _during(
                load, args.fault_clients, 8, functools.partial(action, d, args.fault_hold_s)
            )
            faults[name] = {**info, "clients": args.fault_clients, "load": summarise(samples, seconds)}
            print(f"fault {name}: {info}", flush=True)
        faults["replica"]["failovers"] = load.failovers
        report["faults"] = faults
        report["verify"] = verify(d)
        report["writebacks"] = acknowledged_check(d, len(load.missed_questions) + sum(map(len, hot.values())))
    return report


def _table(report: dict[str, Any]) -> str:
    lines = [
        "| phase | clients | req/s | p50 ms | p99 ms | hit p50 | miss p50 | errors | hit share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(phase: str, r: dict[str, Any]) -> None:
        lines.append(
            f"| {phase} | {r.get('clients', '')} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['by_kind']['hit']['p50_ms']} | {r['by_kind']['miss']['p50_ms']} | "
            f"{r['error_rate']:.1%} {r['errors'] or ''} | {r['hit_share']} |"
        )

    for r in report["ramp_stand_in"]:
        row("stand-in upstream", r)
    row("real backend", report["real_backend"])
    for name, fault in report["faults"].items():
        row(f"kill -9 {name}", {"clients": fault["clients"], **fault["load"]})
    w = report["writebacks"]
    lines.append("")
    lines.append(
        f"write-backs (stand-in): {w['answered_misses']} misses answered, "
        f"{w['acknowledged_writebacks']} acknowledged, "
        f"{w['lost']} lost; verify: "
        + ", ".join(
            f"{k} exit {v['exit_code']} ({v['entries']} entries)" for k, v in report["verify"].items()
        )
    )
    f = report["faults"]
    lines.append(
        f"backend fault: breaker opened after {f['backend']['breaker_opened_after_s']} s; misses served "
        f"again {f['backend']['misses_served_again_after_s']} s after the backend was back (its restart: "
        f"{f['backend']['backend_restart_s']} s), breaker closed: {f['backend']['breaker_closed']}; "
        f"unclean errors: {sum(x['load']['unclean_errors'] for x in f.values())}; "
        f"failovers: {f['replica']['failovers']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small levels and short phases (a few minutes)")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[4, 16, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    parser.add_argument("--hot", type=int, default=8, help="stored questions per tenant")
    parser.add_argument("--real-clients", type=int, default=4)
    parser.add_argument("--real-seconds", type=float, default=30.0)
    parser.add_argument(
        "--fault-clients", type=int, default=8, help="load during the Redis and replica faults"
    )
    parser.add_argument(
        "--fault-hold-s", type=float, default=5.0, help="how long a fault lasts (Redis, replica)"
    )
    parser.add_argument("--max-tokens", type=int, default=24, help="of misses on the real backend")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.seconds, args.hot = [2, 8, 32], 6.0, 6
        args.real_seconds, args.fault_hold_s = 12.0, 3.0
    report = asyncio.run(main_async(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(_table(report))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
