"""The base every service imports: settings loading, the structured log format, lazy exports."""

from precog.core.lazy import lazy_exports
from precog.core.logs import configure_logging
from precog.core.settings import ConfigError, ServiceSettings, load_settings

__all__ = ["ConfigError", "ServiceSettings", "configure_logging", "lazy_exports", "load_settings"]
