"""Who is calling: API keys map to tenants, and admin routes need their own token.

With no keys configured the gateway is open and everyone is the tenant `default`; the admin API is then
open too unless an admin token is set (a local, single-user set-up). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import math

from fastapi import Request

from precog.gateway.errors import GatewayError
from precog.gateway.ratelimit import RateLimiter
from precog.gateway.settings import GatewaySettings

DEFAULT_TENANT = "default"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def resolve_tenant(settings: GatewaySettings, limiter: RateLimiter, request: Request) -> str:
    """The caller's tenant; raises 401 for a missing or unknown key and 429 over the key's rate."""
    token = bearer_token(request)
    if settings.open_tenancy:
        tenant, limit_key = DEFAULT_TENANT, token or (request.client.host if request.client else "anonymous")
    else:
        if token is None:
            raise GatewayError(
                401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        tenant = next((t for key, t in settings.api_keys.items() if hmac.compare_digest(key, token)), "")
        if not tenant:
            raise GatewayError(401, "incorrect API key provided", code="invalid_api_key")
        limit_key = token
    wait = limiter.acquire(limit_key)
    if wait is not None:
        raise GatewayError(
            429,
            f"rate limit of {limiter.per_minute} requests per minute reached for this key",
            code="rate_limit_exceeded",
            headers={"retry-after": str(max(1, math.ceil(wait)))},
        )
    return tenant


def require_admin(settings: GatewaySettings, request: Request) -> None:
    if settings.admin_token is None:
        if settings.open_tenancy:
            return
        raise GatewayError(403, "the admin API is disabled: set an admin token", code="admin_disabled")
    token = bearer_token(request)
    if token is None or not hmac.compare_digest(token, settings.admin_token):
        raise GatewayError(
            401, "admin routes need 'Authorization: Bearer <admin token>'", code="invalid_admin_token"
        )
