"""The application shell: the `precog` command, settings loading and log setup shared by the services."""

from precog.logs import configure_logging
from precog.settings import ConfigError, ServiceSettings, load_settings

__all__ = ["ConfigError", "ServiceSettings", "configure_logging", "load_settings"]
