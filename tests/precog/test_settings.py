"""Settings precedence (defaults < TOML < env) and errors that name the bad setting."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from precog.core import ConfigError, ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    section: ClassVar[str] = "demo"
    model_config = SettingsConfigDict(env_prefix="PRECOG_DEMO_", extra="forbid")

    port: int = 8000
    threshold: float = 0.9
    name: str = "default"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PRECOG_CONFIG", "PRECOG_DEMO_PORT", "PRECOG_DEMO_THRESHOLD", "PRECOG_DEMO_NAME"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_apply_without_file_or_env() -> None:
    settings = load_settings(DemoSettings)
    assert (settings.port, settings.threshold, settings.name) == (8000, 0.9, "default")


def test_toml_overrides_defaults_and_env_overrides_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "precog.toml"
    config.write_text('[demo]\nport = 9100\nname = "from-file"\n[other]\nport = 1\n')
    monkeypatch.setenv("PRECOG_DEMO_NAME", "from-env")
    settings = load_settings(DemoSettings, config=config)
    assert settings.port == 9100
    assert settings.name == "from-env"
    assert settings.threshold == 0.9


def test_explicit_overrides_win_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOG_DEMO_PORT", "7000")
    assert load_settings(DemoSettings, port=7100, name=None).port == 7100


def test_invalid_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOG_DEMO_PORT", "not-a-number")
    with pytest.raises(ConfigError, match=r"port \(PRECOG_DEMO_PORT\)"):
        load_settings(DemoSettings)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "precog.toml"
    config.write_text("[demo]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(DemoSettings, config=config)


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(DemoSettings, config=tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[demo\nport=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(DemoSettings, config=bad)
