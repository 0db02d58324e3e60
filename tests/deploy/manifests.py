"""Helpers of the deploy suite: where the files are, and checks that names in them are real settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from precog.backend import EngineConfig
from precog.backend.server import BackendSettings
from precog.core import ServiceSettings
from precog.gateway import GatewaySettings
from precog.precompute import PrecomputeSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings,
    "backend": BackendSettings,
    "engine": EngineConfig,
    "precompute": PrecomputeSettings,
}
# PRECOG_* variables that are not settings: the config file, the model home, the deploy scripts' own.
NOT_SETTINGS = {
    "PRECOG_CONFIG",
    "PRECOG_HOME",
    "PRECOG_CORPUS",
    "PRECOG_STORE_WAIT_S",
    "PRECOG_PRECOMPUTE_ENGINE",
}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def unknown_setting_variables(names: list[str]) -> list[str]:
    """The PRECOG_<SERVICE>_<NAME> variables among `names` that name no field of that service's settings."""
    unknown = []
    for name in names:
        if not name.startswith("PRECOG_") or name in NOT_SETTINGS:
            continue
        service, _, field = name.removeprefix("PRECOG_").partition("_")
        cls = SETTINGS.get(service.lower())
        if cls is None or field.lower() not in cls.model_fields:
            unknown.append(name)
    return unknown


def load_every_section(config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, ServiceSettings]:
    """Every service's settings from `config` alone (no PRECOG_* variables of the test environment)."""

    for name in [n for n in os.environ if n.startswith("PRECOG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PRECOG_CONFIG", str(config))
    return {section: cls() for section, cls in SETTINGS.items()}


def gateway_paths() -> set[str]:
    """The HTTP paths the real gateway app serves (from its OpenAPI document; nothing is started)."""
    from precog.gateway import GatewaySettings, create_app

    return set(create_app(GatewaySettings()).openapi()["paths"])
