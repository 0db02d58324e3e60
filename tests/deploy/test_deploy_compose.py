"""deploy/compose.yaml and its overrides: valid against the Compose spec (the vendored schema of
check-jsonschema, offline; `docker compose config` too where the plugin is installed), and consistent with
the code: settings variables that exist, probe paths the apps serve, an nginx upstream per gateway."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from precog.gateway import GatewaySettings
from tests.deploy.manifests import DEPLOY, gateway_paths, unknown_setting_variables, yaml_documents

COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml", DEPLOY / "compose.external.yaml"]


def _compose() -> dict:
    [document] = yaml_documents(DEPLOY / "compose.yaml")
    return document


def _check_compose_spec(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_compose_files_match_the_compose_spec() -> None:
    result = _check_compose_spec(*COMPOSE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("healthcheck:", "healthchek:", 1))
    result = _check_compose_spec(broken)
    assert result.returncode != 0 and "healthchek" in result.stdout


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_accepts_every_combination() -> None:
    env = {**os.environ, "PRECOG_ADMIN_TOKEN": "test"}
    for override in ([], [DEPLOY / "compose.gpu.yaml"], [DEPLOY / "compose.external.yaml"]):
        files = [arg for path in [DEPLOY / "compose.yaml", *override] for arg in ("-f", str(path))]
        command = ["docker", "compose", *files, "config", "-q"]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr


def test_every_precog_variable_in_compose_is_a_real_setting() -> None:
    names = []
    for path in COMPOSE_FILES:
        for service in yaml_documents(path)[0]["services"].values():
            names += list(service.get("environment", {}))
    names += list(_compose()["x-gateway"]["environment"])
    assert names and unknown_setting_variables(names) == []


def test_two_gateway_replicas_behind_nginx_and_one_writer_of_the_store() -> None:
    services = _compose()["services"]
    gateways = sorted(name for name in services if name.startswith("gateway-"))
    assert len(gateways) >= 2
    assert all(services[g]["environment"]["PRECOG_GATEWAY_STORE_ROLE"] == "replica" for g in gateways)
    writers = [name for name, s in services.items() if s.get("command") == ["gateway", "writer"]]
    mounting_the_store = [
        name for name, s in services.items() if any(str(v).startswith("store:") for v in s.get("volumes", []))
    ]
    # RocksDB allows one writer: the writer, and precompute (a job run while the writer is stopped).
    assert writers == ["writer"] and sorted(mounting_the_store) == ["precompute", "writer"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"upstream gateways \{(.*?)\}", nginx, re.S)
    assert upstream is not None
    assert sorted(re.findall(r"server (\S+):8000", upstream.group(1))) == gateways
    assert services["lb"]["depends_on"].keys() == set(gateways)


def test_gateway_settings_of_compose_load_as_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    """production.toml plus the variables compose sets (defaults interpolated) make valid replica settings."""
    for name in [n for n in os.environ if n.startswith("PRECOG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PRECOG_CONFIG", str(DEPLOY / "profiles" / "production.toml"))
    for name, value in _compose()["x-gateway"]["environment"].items():
        if name != "PRECOG_CONFIG":
            monkeypatch.setenv(name, re.sub(r"\$\{[^:}]+:[-?]([^}]*)\}", r"\1", str(value)))
    settings = GatewaySettings()
    assert settings.store_role == "replica" and settings.snapshot_root is not None


def test_health_checks_ask_routes_the_gateway_serves() -> None:
    paths = gateway_paths()
    checked = [
        url.rsplit("8000", 1)[1]
        for url in _compose()["x-gateway"]["healthcheck"]["test"]
        if url.startswith("http://127.0.0.1:8000")
    ]
    assert checked and set(checked) <= paths


def test_config_files_named_by_compose_exist() -> None:
    for path in COMPOSE_FILES:
        for config in yaml_documents(path)[0].get("configs", {}).values():
            file = re.sub(r"\$\{[^:}]+:-([^}]+)\}", r"\1", config["file"])
            assert (DEPLOY / file).is_file(), file
