"""`precog backend serve` reads [backend] (server) and [engine] (engine) from one config file and env."""

from __future__ import annotations

from pathlib import Path

import pytest

from precog.backend import EngineConfig
from precog.backend.server import BackendSettings
from precog.core import ConfigError, load_settings


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config file named by PRECOG_CONFIG, with no PRECOG_BACKEND_* variables set."""
    for var in ("PRECOG_BACKEND_HOST", "PRECOG_BACKEND_PORT", "PRECOG_BACKEND_STORE_PATH"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "precog.toml"
    config.write_text("")
    monkeypatch.setenv("PRECOG_CONFIG", str(config))
    return config


def test_defaults(config_file: Path) -> None:
    settings = load_settings(BackendSettings)
    assert (settings.host, settings.port, settings.store_path, settings.log_level) == (
        "127.0.0.1",
        8001,
        Path("var/store"),
        "info",
    )


def test_file_then_env_then_flags(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text('[backend]\nport = 9001\nstore_path = "/data/store"\n[engine]\nmax_num_seqs = 8\n')
    monkeypatch.setenv("PRECOG_BACKEND_HOST", "0.0.0.0")
    settings = load_settings(BackendSettings, port=9002)
    assert (settings.host, settings.port, settings.store_path) == ("0.0.0.0", 9002, Path("/data/store"))
    assert load_settings(EngineConfig).max_num_seqs == 8


def test_bad_values_name_the_setting(config_file: Path) -> None:
    config_file.write_text('[backend]\nport = 0\nprot = 1\nlog_level = "loud"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(BackendSettings)
    message = str(error.value)
    assert "PRECOG_BACKEND_PORT" in message and "prot" in message and "log_level" in message
