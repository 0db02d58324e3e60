"""`precog up`: the backend and the gateway on localhost, the way `make run` starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import typer


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
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


def up(
    backend_port: int = typer.Option(8001, help="Port of the model server."),
    gateway_port: int = typer.Option(8000, help="Port of the gateway."),
    host: str = typer.Option("127.0.0.1", help="Interface both services bind."),
) -> None:
    env = dict(os.environ, PRECOG_GATEWAY_UPSTREAM_URL=f"http://{host}:{backend_port}")
    exe = [sys.executable, "-m", "precog.cli"]
    procs = [
        subprocess.Popen([*exe, "backend", "serve", "--host", host, "--port", str(backend_port)], env=env),
    ]
    try:
        _wait_healthy(f"http://{host}:{backend_port}/healthz", procs[0], timeout=300)
        procs.append(
            subprocess.Popen([*exe, "gateway", "serve", "--host", host, "--port", str(gateway_port)], env=env)
        )
        _wait_healthy(f"http://{host}:{gateway_port}/healthz", procs[1], timeout=300)
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
