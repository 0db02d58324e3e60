"""The OpenAI-compatible HTTP server over the engine: `create_app(engine)`, run by `precog backend serve`.

Names load on first use (`precog --help` must not import torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.core import lazy_exports

if TYPE_CHECKING:
    from precog.backend.server.app import create_app
    from precog.backend.server.settings import BackendSettings

_EXPORTS = {"BackendSettings": "precog.backend.server.settings", "create_app": "precog.backend.server.app"}

__all__ = ["BackendSettings", "create_app"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
