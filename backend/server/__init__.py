"""The OpenAI-compatible HTTP server over the engine: `create_app(engine)`, run by `precog backend serve`."""

from backend.server.app import create_app
from backend.server.settings import BackendSettings

__all__ = ["BackendSettings", "create_app"]
