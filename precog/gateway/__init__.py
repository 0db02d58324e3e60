"""The online gateway: an OpenAI-compatible front proxy that serves stored answers and relays the rest.

The app is imported lazily, so that `import precog.gateway.guard` (used offline by benchmarks) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from precog.gateway.app import create_app
    from precog.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from precog.gateway.app import create_app

        return create_app
    if name == "GatewaySettings":
        from precog.gateway.settings import GatewaySettings

        return GatewaySettings
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
