"""The admin API: statistics, entries (list, search, get, delete), invalidation, thresholds, snapshots.

Every route needs the admin token. Invalidations are applied to this replica's store and broadcast to
the others through the shared tier.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from precog.gateway.api.deps import admin, gateway_of
from precog.gateway.errors import GatewayError
from precog.gateway.scoping import ScopeTemplate
from precog.gateway.shared import Invalidation
from precog.store import Entry, normalise_text

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses={
        401: {"description": "Missing or wrong admin token"},
        403: {"description": "Admin API disabled"},
    },
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EntryView(BaseModel):
    id: str
    scope: str
    query: str
    answer: str
    model: str
    source: str
    created: float
    expires: float | None
    hits: int
    kv_blob_id: str | None
    meta: dict[str, str]
    completion_tokens: int | None

    @classmethod
    def of(cls, entry: Entry) -> EntryView:
        return cls(
            id=entry.id,
            scope=entry.scope,
            query=entry.query,
            answer=entry.answer,
            model=entry.model,
            source=str(entry.source),
            created=entry.created,
            expires=entry.expires,
            hits=entry.hits,
            kv_blob_id=entry.kv_blob_id,
            meta=dict(entry.meta),
            completion_tokens=entry.completion_tokens,
        )


class EntryPage(BaseModel):
    entries: list[EntryView]
    limit: int
    offset: int


class InvalidateRequest(_Strict):
    ids: list[str] = Field(default_factory=list, max_length=10_000)
    scope: str | None = Field(default=None, min_length=1, max_length=128)
    substring: str | None = Field(default=None, min_length=1, max_length=1000)
    older_than_s: float | None = Field(default=None, ge=0.0, le=1e10)

    @field_validator("substring")
    @classmethod
    def _substring_has_text(cls, substring: str | None) -> str | None:
        if substring is not None and not normalise_text(substring):
            raise ValueError("substring must contain some text (blank would match every entry)")
        return substring

    @model_validator(mode="after")
    def _some_filter(self) -> InvalidateRequest:
        if not (self.ids or self.scope or self.substring or self.older_than_s is not None):
            raise ValueError("give at least one of ids, scope, substring, older_than_s")
        return self


class Invalidated(BaseModel):
    invalidated: int


class ThresholdConfig(BaseModel):
    similarity_threshold: float
    tenant_thresholds: dict[str, float]
    scope_templates: list[ScopeTemplate]
    writeback_enabled: bool
    writeback_max_temperature: float
    parallel_delay_ms: float


class ConfigPatch(_Strict):
    similarity_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    tenant_thresholds: dict[str, float] | None = None
    scope_templates: list[ScopeTemplate] | None = None
    writeback_enabled: bool | None = None
    writeback_max_temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    parallel_delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0)

    @model_validator(mode="after")
    def _thresholds_in_range(self) -> ConfigPatch:
        for tenant, value in (self.tenant_thresholds or {}).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"tenant_thresholds.{tenant} must lie in [0, 1]")
        return self


class SnapshotRequest(_Strict):
    name: str | None = Field(
        default=None, pattern=r"^[0-9A-Za-z_.-]{1,64}$", description="Directory name; default: time."
    )
    tar: bool = False


class Snapshot(BaseModel):
    path: str
    seconds: float


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Hit rate over windows, per tenant and model, latency histograms, tokens and cost saved, each
    tenant's false-hit rate (estimated and verified, see precog/gateway/calibration.py); with the shared
    tier, `shared_tier.cluster` sums every replica's requests."""
    gateway = gateway_of(request)
    snapshot = gateway.stats.snapshot()
    served = gateway.store.snapshot
    snapshot["store"] = {
        "entries": len(gateway.store.store),
        "role": gateway.settings.store_role,
        "snapshot": None if served is None else served.name,
    }
    snapshot["upstream"] = {"breaker": gateway.upstream.breaker.state.name.lower()}
    calibrator = gateway.calibrator
    snapshot["false_hits"] = (
        None
        if calibrator is None
        else [asdict(calibrator.tenant_estimate(tenant)) for tenant in calibrator.tenants()]
    )
    if gateway.shared is not None:
        snapshot["shared_tier"] = {
            "up": gateway.shared.up,
            "cluster_counters": await gateway.shared.counters(),
            "cluster": await gateway.shared.cluster(),
        }
    return snapshot


@router.get("/entries", response_model=EntryPage)
async def list_entries(
    request: Request,
    q: str | None = Query(None, max_length=1000, description="Text the query or answer contains."),
    scope: str | None = Query(None, max_length=128),
    limit: int = Query(50, ge=0, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> EntryPage:
    """A page of stored entries, optionally of one scope and containing some text."""
    found = await gateway_of(request).store.entries(scope=scope, limit=limit, offset=offset, text=q or None)
    return EntryPage(entries=[EntryView.of(e) for e in found], limit=limit, offset=offset)


@router.get(
    "/entries/{entry_id}", response_model=EntryView, responses={404: {"description": "No such entry"}}
)
async def get_entry(request: Request, entry_id: str) -> EntryView:
    entry = await gateway_of(request).store.get(entry_id)
    if entry is None:
        raise GatewayError(404, f"no entry with id {entry_id!r}", code="entry_not_found", param="entry_id")
    return EntryView.of(entry)


@router.delete(
    "/entries/{entry_id}", response_model=Invalidated, responses={404: {"description": "No such entry"}}
)
async def delete_entry(request: Request, entry_id: str) -> Invalidated:
    gateway = gateway_of(request)
    if await gateway.store.get(entry_id) is None:
        raise GatewayError(404, f"no entry with id {entry_id!r}", code="entry_not_found", param="entry_id")
    return Invalidated(invalidated=await gateway.invalidate(Invalidation(ids=(entry_id,), at=time.time())))


@router.post("/invalidate", response_model=Invalidated)
async def invalidate(request: Request, body: InvalidateRequest) -> Invalidated:
    """Delete every entry that matches all given filters, here and on every replica."""
    invalidation = Invalidation(
        ids=tuple(body.ids),
        scope=body.scope,
        substring=body.substring,
        older_than_s=body.older_than_s,
        at=time.time(),
    )
    return Invalidated(invalidated=await gateway_of(request).invalidate(invalidation))


def _config(request: Request) -> ThresholdConfig:
    settings = gateway_of(request).settings
    return ThresholdConfig(
        similarity_threshold=settings.similarity_threshold,
        tenant_thresholds=dict(settings.tenant_thresholds),
        scope_templates=list(settings.scope_templates),
        writeback_enabled=settings.writeback_enabled,
        writeback_max_temperature=settings.writeback_max_temperature,
        parallel_delay_ms=settings.parallel_delay_ms,
    )


@router.get("/config", response_model=ThresholdConfig)
async def get_config(request: Request) -> ThresholdConfig:
    return _config(request)


@router.patch("/config", response_model=ThresholdConfig)
async def patch_config(request: Request, body: ConfigPatch) -> ThresholdConfig:
    """Change thresholds, scope templates and write-back policy at run time (this replica; not
    persisted)."""
    settings = gateway_of(request).settings
    for name in body.model_fields_set:
        if getattr(body, name) is not None:
            setattr(settings, name, getattr(body, name))
    return _config(request)


@router.post("/snapshot", response_model=Snapshot)
async def snapshot(request: Request, body: SnapshotRequest | None = None) -> Snapshot:
    """A consistent copy of the store beside it, under `<store>.snapshots/`, with every answer already
    offered for write-back in it."""
    gateway = gateway_of(request)
    if gateway.replica:
        raise GatewayError(
            409,
            "this replica serves a published snapshot; the store writer publishes them",
            code="replica_read_only",
        )
    body = body or SnapshotRequest(name=None)
    name = body.name or time.strftime("%Y%m%d-%H%M%S")
    folder = Path(f"{gateway.settings.store_path}.snapshots")
    destination = folder / (f"{name}.tar.gz" if body.tar else name)
    if destination.exists():
        raise GatewayError(409, f"snapshot {destination.name!r} exists already", code="snapshot_exists")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    await gateway.writeback.drain()
    path = await gateway.store.export(destination)
    return Snapshot(path=str(path), seconds=round(time.perf_counter() - started, 3))
