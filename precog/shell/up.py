"""`precog up`: the backend and the gateway on localhost, the way `make run` starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll `url` until it answers 200; exit with a message if `proc` dies first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with code {proc.returncode} before becoming healthy")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become healthy within {timeout:.0f}s")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP stop `precog up` the way Ctrl-C does: through the clean-up that stops both services
    (by default they would end this process alone and leave the services running, holding their ports).
    SIGINT is set too: a process started from a background job of a script inherits it ignored, and would
    then not stop on Ctrl-C at all."""
    raise KeyboardInterrupt


def _build_sample_store(exe: list[str], store: Path, corpus: Path, upstream: str) -> None:
    """Precompute a small store from the sample corpus, through the backend that is already up."""
    typer.echo(f"No store at {store}: building the sample store from {corpus} (a few minutes on a CPU).")
    if not corpus.exists():
        subprocess.run([*exe, "precompute", "sample", "--out", str(corpus)], check=True)
    command = [*exe, "precompute", "--corpus", str(corpus), "--store", str(store), "--upstream-url", upstream]
    subprocess.run(command, check=True)


def up(
    backend_port: Annotated[int, typer.Option(help="Port of the model server.")] = 8001,
    gateway_port: Annotated[int, typer.Option(help="Port of the gateway.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface both services bind.")] = "127.0.0.1",
    store: Annotated[Path, typer.Option(help="Store to serve; built from the sample when missing.")] = Path(
        "var/store"
    ),
    sample_corpus: Annotated[Path, typer.Option(help="Where the sample corpus is written.")] = Path(
        "var/sample-corpus"
    ),
) -> None:
    backend_url = f"http://{host}:{backend_port}"
    env = dict(os.environ, PRECOG_GATEWAY_UPSTREAM_URL=backend_url)
    exe = [sys.executable, "-m", "precog"]
    bind = ["--host", host, "--store-path", str(store)]
    backend = [*exe, "backend", "serve", *bind, "--port", str(backend_port)]
    gateway = [*exe, "gateway", "serve", *bind, "--port", str(gateway_port)]
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _interrupt)
    procs = [subprocess.Popen(backend, env=env)]
    try:
        wait_healthy(f"{backend_url}/healthz", procs[0], timeout=300)
        if not store.exists():
            _build_sample_store(exe, store, sample_corpus, backend_url)
        procs.append(subprocess.Popen(gateway, env=env))
        wait_healthy(f"http://{host}:{gateway_port}/healthz", procs[1], timeout=300)
        typer.echo(
            f"\nprecog is up.\n  gateway (OpenAI-compatible): http://{host}:{gateway_port}/v1\n"
            f"  dashboard:                   http://{host}:{gateway_port}/dashboard\n"
            f"  gateway metrics:             http://{host}:{gateway_port}/metrics\n"
            f"  backend (model server):      http://{host}:{backend_port}/v1\n"
            "Press Ctrl-C to stop."
        )
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
