"""The gateway's parts, built and torn down together; one instance per app, no module-level state.

`Gateway.start` composes named builders: the served store and its replication role, the embedding batcher,
and the request path (lookup, write-back, proxy)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from precog.gateway.batcher import EmbeddingBatcher
from precog.gateway.calibration import CalibrationPolicy, Calibrator
from precog.gateway.conversation import NextTurnIndex
from precog.gateway.lookup import AnswerTier, CandidateGuard, Lookup
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.models import ModelCatalog
from precog.gateway.proxy import CompletionProxy
from precog.gateway.replication import Replication, SharedTier
from precog.gateway.settings import GatewaySettings
from precog.gateway.shared import Invalidation
from precog.gateway.stats import Stats
from precog.gateway.store_access import StoreAccess
from precog.gateway.upstream import Upstream
from precog.gateway.writeback import WriteBack
from precog.store import Embedder, Store

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    settings: GatewaySettings
    replication: Replication
    embedder: Embedder
    upstream: Upstream
    models: ModelCatalog
    batcher: EmbeddingBatcher
    writeback: WriteBack
    proxy: CompletionProxy
    stats: Stats
    metrics: GatewayMetrics
    owns_store: bool
    calibrator: Calibrator | None = None

    @classmethod
    async def start(
        cls,
        settings: GatewaySettings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        guard: CandidateGuard | None = None,
    ) -> Gateway:
        """Open the store (unless given), load the embedder and guard (unless given), start the workers."""
        # Short texts gain nothing from intra-op parallelism, and on a loaded machine two threads waiting
        # for each other made one embedding 10-30x slower than one thread (measured: 250-650 ms vs 20 ms).
        torch.set_num_threads(settings.embed_threads)
        embedder = embedder or Embedder()
        replication = await _replication(settings, store, embedder)
        metrics = GatewayMetrics()
        stats = Stats(settings.cost_per_1k_tokens)
        upstream = Upstream(settings, metrics)
        batcher = _batcher(settings, embedder, metrics)
        writeback = WriteBack(
            settings, replication.store, batcher, metrics, replication.shared, replica=replication.replica
        )
        guard = guard or _default_guard()
        calibrator = _calibrator(settings, guard)
        if calibrator is not None and _calibration_file(settings).exists():
            try:
                calibrator.load(_calibration_file(settings))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # start again from the prior
                log.warning("calibration state not loaded", extra={"error": repr(exc)})
        proxy = _proxy(settings, replication, batcher, guard, calibrator, upstream, writeback, stats, metrics)
        gateway = cls(
            settings=settings,
            replication=replication,
            embedder=embedder,
            upstream=upstream,
            models=ModelCatalog(settings, upstream),
            batcher=batcher,
            writeback=writeback,
            proxy=proxy,
            stats=stats,
            metrics=metrics,
            owns_store=store is None,
            calibrator=calibrator,
        )
        await gateway._start_workers()
        return gateway

    async def _start_workers(self) -> None:
        shared = self.shared
        self.metrics.watch(
            breaker_state=lambda: float(self.upstream.breaker.state),
            hit_rate=self.stats.hit_rate,
            shared_tier_up=lambda: float(shared is not None and shared.up),
        )
        self.batcher.start()
        await self.batcher.embed("warm up the embedding model before the first request")
        self.writeback.start()
        await self.replication.start()
        log.info(
            "gateway started",
            extra={
                "upstream": self.settings.upstream_url,
                "store": str(self.settings.store_path),
                "shared_tier": bool(shared),
                "store_role": self.settings.store_role,
                "open_tenancy": self.settings.open_tenancy,
            },
        )

    async def stop(self) -> None:
        if self.calibrator is not None and self.settings.store_role == "local":
            self.calibrator.save(_calibration_file(self.settings))
        await self.writeback.stop()
        await self.batcher.stop()
        await self.replication.stop()
        await self.upstream.aclose()
        if self.owns_store:
            self.store.close()

    @property
    def store(self) -> StoreAccess:
        return self.replication.store

    @property
    def shared(self) -> SharedTier | None:
        return self.replication.shared

    @property
    def replica(self) -> bool:
        return self.replication.replica

    async def invalidate(self, invalidation: Invalidation) -> int:
        """Apply here and tell the other replicas (see `Replication.invalidate`)."""
        return await self.replication.invalidate(invalidation)


async def _replication(settings: GatewaySettings, store: Store | None, embedder: Embedder) -> Replication:
    """The served store: the one given, the published snapshot (a replica), or the local store opened."""
    if settings.store_role == "replica":
        if store is not None:
            raise ValueError("a replica opens the published snapshot itself; pass no store")
        return await Replication.follow(settings)
    if store is None:
        store = Store.open(
            settings.store_path, embedding_model=embedder.name, dim=embedder.dim, sync=settings.store_sync
        )
    return Replication.local(settings, store)


def _batcher(settings: GatewaySettings, embedder: Embedder, metrics: GatewayMetrics) -> EmbeddingBatcher:
    return EmbeddingBatcher(
        embedder.encode,
        settings.embed_batch_max,
        settings.embed_batch_window_ms,
        on_batch=metrics.embed_batch_size.observe,
        cache_size=settings.embed_cache_size,
    )


def _default_guard() -> CandidateGuard:
    from precog.gateway.guard import Guard

    return cast(CandidateGuard, Guard())


def _calibration_file(settings: GatewaySettings) -> Path:
    """Beside the store, like its snapshots: what the calibrator learned survives a restart."""
    return Path(f"{settings.store_path}.calibration.json")


def _calibrator(settings: GatewaySettings, guard: CandidateGuard) -> Calibrator | None:
    if not settings.calibration:
        return None
    policy = CalibrationPolicy(
        settings.max_false_hit_rate,
        settings.calibration_verify_every,
        settings.calibration_explore_from,
        check_new_entries=settings.calibration_check_new_entries,
    )
    return Calibrator(policy, {"semantic": guard.threshold, "answer": 0.0, "repeat": 0.0})


def _proxy(
    settings: GatewaySettings,
    replication: Replication,
    batcher: EmbeddingBatcher,
    guard: CandidateGuard,
    calibrator: Calibrator | None,
    upstream: Upstream,
    writeback: WriteBack,
    stats: Stats,
    metrics: GatewayMetrics,
) -> CompletionProxy:
    """The request path: lookup, then serve from storage or relay and write back."""
    shared = replication.shared
    lookup = Lookup(
        replication.store,
        batcher,
        guard,
        settings.threshold_for,
        metrics,
        shared,
        settings.search_k,
        settings.kv_reuse_min_similarity if settings.kv_reuse else None,
        (
            AnswerTier(
                settings.answer_candidates, settings.answer_min_similarity, settings.answer_covered_below
            )
            if settings.answer_tier
            else None
        ),
        calibrator,
        settings.calibration_agree_similarity,
        _calibration_file(settings) if settings.store_role == "local" else None,
    )
    return CompletionProxy(
        settings,
        replication.store,
        lookup,
        upstream,
        writeback,
        NextTurnIndex(shared),
        stats,
        metrics,
        shared,
    )
