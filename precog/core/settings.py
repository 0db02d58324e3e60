"""Typed settings per service: defaults < TOML config file < PRECOG_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "PRECOG_CONFIG"


class ConfigError(ValueError):
    """A setting is invalid; the message names it and says where it came from."""


class _TomlSection(PydanticBaseSettingsSource):
    """One `[section]` table of the TOML config file; a missing file or table contributes nothing."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, section: str) -> None:
        super().__init__(settings_cls)
        try:
            document = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} ({CONFIG_ENV}) does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        table = document.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [{section}] must be a table")
        self._values: dict[str, Any] = table

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class ServiceSettings(BaseSettings):
    """Base of every service's settings; a subclass sets `section` and its env prefix."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            sources.append(_TomlSection(settings_cls, Path(config), cls.section))
        return tuple(sources)


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], config: Path | None = None, **overrides: Any) -> S:
    """Build `cls`, failing with a ConfigError that names each bad setting and its env variable."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])} ({prefix}{str(err['loc'][0]).upper()}): {err['msg']}"
            if err["loc"]
            else err["msg"]  # a check across settings names them itself
            for err in exc.errors()
        ]
        raise ConfigError(f"invalid {cls.section} settings: " + "; ".join(problems)) from None
