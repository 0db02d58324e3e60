"""Request-scoped access to the app's Gateway, and the auth dependencies built on it."""

from __future__ import annotations

from fastapi import Request

from precog.gateway.service import Gateway
from precog.gateway.tenancy import require_admin, resolve_tenant


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def tenant(request: Request) -> str:
    """The caller's tenant (401 without a valid key, 429 over its rate)."""
    gateway = gateway_of(request)
    return resolve_tenant(gateway.settings, request.app.state.limiter, request)


def admin(request: Request) -> None:
    require_admin(gateway_of(request).settings, request)
