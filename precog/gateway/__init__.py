"""The online gateway: an OpenAI-compatible front proxy that serves stored answers and relays the rest.

The app is imported lazily, so that `import precog.gateway.guard` (used offline by benchmarks) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.core import lazy_exports

if TYPE_CHECKING:
    from precog.gateway.app import create_app
    from precog.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
_EXPORTS = {"GatewaySettings": "precog.gateway.settings", "create_app": "precog.gateway.app"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
