"""The lookup pipeline, stage by stage, each stage timed: scope → exact tier → embed → search → guard,
then, when no stored question matched, the answer tier: the nearest stored questions and the entries whose
question and answer hold the new question's words (BM25), each judged by whether its stored answer answers
the new question (`precog.gateway.guard.answer_check`).

Modelled on GPTCache's pre-process / embed / search / evaluate split, but as an object per gateway
(no global cache) whose result says why it missed, so a cache that never hits can be diagnosed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from precog.gateway.batcher import EmbeddingBatcher
from precog.gateway.calibration import Calibrator, Candidate, Judgement, write_state
from precog.gateway.guard import AnswerVerdict, answer_check, uncovered
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.openai_format import StoredAnswer, estimate_tokens
from precog.gateway.query import CacheQuery
from precog.gateway.shared import HotEntry, SharedCache
from precog.gateway.store_access import StoreAccess
from precog.store import Entry

Tier = Literal["exact", "shared", "semantic", "answer"]
# A repeat with typos is looked for from this cosine up, under the similarity threshold: lower, two
# questions that align word for word but for slips are rarely left (and the guard's own floor is 0.5).
REPEAT_FLOOR = 0.5
SAVE_EVERY_CHECKS = 50  # the calibrator's state is also saved when the gateway stops


class Verdict(Protocol):
    @property
    def accept(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def veto(self) -> bool: ...


class CandidateGuard(Protocol):
    """Decides whether a close stored question really asks the same thing (numbers, negation, ...);
    `threshold`: the score from which it accepts."""

    threshold: float

    def check(self, query: str, candidate: str, similarity: float) -> Verdict: ...

    def near_repeat(self, query: str, candidate: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class AnswerTier:
    """How the answer tier looks: `candidates` from each of the dense and the lexical search, dense ones
    only from `min_similarity` up; and how the question tier uses the answers: below `covered_below`
    cosine a stored question the guard accepts must also have every content word of the new question in
    it or its answer ("When was Gershwin born?" is not "What was Gershwin's career?", cosine 0.87)."""

    candidates: int = 8
    min_similarity: float = 0.5
    covered_below: float = 0.92


@dataclass(frozen=True, slots=True)
class Hit:
    entry_id: str
    query: str
    answer: str
    similarity: float
    tier: Tier
    kv_blob_id: str | None = None
    completion_tokens: int | None = None

    @classmethod
    def of(cls, entry: Entry | HotEntry, similarity: float, tier: Tier) -> Hit:
        return cls(
            entry_id=entry.id,
            query=entry.query,
            answer=entry.answer,
            similarity=similarity,
            tier=tier,
            kv_blob_id=entry.kv_blob_id,
            completion_tokens=entry.completion_tokens,
        )

    @property
    def answer_tokens(self) -> int:
        """The answer's length in tokens as stored; estimated for entries stored without it."""
        return self.completion_tokens or estimate_tokens(self.answer)

    def served_to(self, query: CacheQuery) -> StoredAnswer:
        """The one way a stored answer becomes an OpenAI response (whole or streamed) to `query`."""
        context = query.system_prompt + " ".join(t.content for t in query.earlier_turns) + query.question
        return StoredAnswer(
            query.kind, query.model, self.answer, estimate_tokens(context), self.answer_tokens
        )


@dataclass(frozen=True, slots=True)
class Check:
    """A would-be hit relayed instead, whose fresh answer is to be compared with the stored one."""

    judgement: Judgement
    stored_answer: str


@dataclass(slots=True)
class LookupResult:
    """`near_kv_blob_id`: the KV blob of the closest candidate over the reuse floor (a near miss feeds
    the upstream's semantic KV reuse); None when reuse is off or no candidate qualifies. `check`: the
    calibrator chose to relay a would-be hit and learn from the answer (see `Lookup.settle`)."""

    hit: Hit | None = None
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    near_kv_blob_id: str | None = None
    check: Check | None = None


class Lookup:
    def __init__(
        self,
        store: StoreAccess,
        batcher: EmbeddingBatcher,
        guard: CandidateGuard,
        threshold_for: Callable[[str], float],
        metrics: GatewayMetrics,
        shared: SharedCache | None = None,
        k: int = 4,
        reuse_floor: float | None = None,
        answers: AnswerTier | None = None,
        calibrator: Calibrator | None = None,
        agree_similarity: float = 0.9,
        calibration_file: Path | None = None,
    ) -> None:
        self._store = store
        self._batcher = batcher
        self._guard = guard
        self._threshold_for = threshold_for
        self._metrics = metrics
        self._shared = shared
        self._k = k
        self._reuse_floor = reuse_floor
        self._answers = answers
        self._calibrator = calibrator
        self._agree_similarity = agree_similarity
        self._calibration_file = calibration_file
        self._checks = 0

    @contextmanager
    def _stage(self, result: LookupResult, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            result.timings_ms[name] = round(seconds * 1000, 3)
            self._metrics.stage_seconds.labels(name).observe(seconds)

    async def run(self, query: CacheQuery) -> LookupResult:
        """Find a stored answer for `query`; a found one that does not fit the request is a miss."""
        result = await self._find(query)
        hit = result.hit
        if hit is not None:
            misfit = query.misfit(hit.answer, hit.answer_tokens)
            if misfit is not None:
                result.hit, result.reason = None, misfit
        return result

    async def _find(self, query: CacheQuery) -> LookupResult:
        result = LookupResult()
        with self._stage(result, "scope"):
            scope = query.scope
        with self._stage(result, "exact"):
            hit = await self._exact(scope, query.question)
        if hit is not None:
            result.hit, result.reason = hit, f"exact match in the {hit.tier} tier"
            return result
        with self._stage(result, "embed"):
            vector = await self._batcher.embed(query.question)
        wide = max(self._k, self._answers.candidates) if self._answers is not None else self._k
        with self._stage(result, "search"):
            nearest = await self._store.search(scope, vector, wide)
        candidates = nearest[: self._k]
        result.near_kv_blob_id = self._near_kv(candidates)
        threshold = self._threshold_for(query.tenant)
        close = [(entry, score) for entry, score in candidates if score >= threshold and not entry.expired()]
        if not close:
            best = max((score for _, score in candidates), default=None)
            result.reason = (
                "no stored question in this scope"
                if best is None
                else f"best similarity {best:.3f} is below the threshold {threshold:.3f}"
            )
        else:
            with self._stage(result, "guard"):
                verdicts = await asyncio.to_thread(self._judge, query.question, close)
            judged = sorted(zip(close, verdicts, strict=False), key=lambda pair: not pair[1].accept)
            for (entry, score), verdict in judged:  # accepted ones first: a check never displaces a hit
                candidate = Candidate(
                    query.tenant,
                    "semantic",
                    entry.id,
                    verdict.score,
                    verdict.accept,
                    verdict.veto,
                    query.relayable,
                )
                decision = self._decide(candidate, entry, result)
                if decision == "serve":
                    result.hit = Hit.of(entry, score, "semantic")
                    result.reason = f"similarity {score:.3f}, guard: {verdict.reason}"
                    return result
                if decision == "verify":
                    result.reason = f"similarity {score:.3f}, guard: {verdict.reason}; {result.reason}"
                    return result
                if decision == "explore":  # checked only if the answer tier serves nothing either
                    break
            rejected = f"guard rejected {len(close)} close candidate(s): {verdicts[0].reason}"
            result.reason = rejected if result.check is None else f"{rejected}; {result.reason}"
        under = [
            (e, score) for e, score in candidates if REPEAT_FLOOR <= score < threshold and not e.expired()
        ]
        if under and result.check is None and await self._repeat(query, under, result):
            return result
        if self._answers is not None and nearest:
            await self._answer_tier(query, scope, nearest, self._answers, result)
        return result

    async def _repeat(
        self, query: CacheQuery, under: list[tuple[Entry, float]], result: LookupResult
    ) -> bool:
        """Serve (or check) the best candidate under the threshold that repeats the question but for
        typos and word forms; True when that decided the request."""
        with self._stage(result, "near_repeat"):
            repeat = await asyncio.to_thread(self._near_repeat, query.question, under)
        if repeat is None:
            return False
        entry, score = repeat
        decision = self._decide(
            Candidate(query.tenant, "repeat", entry.id, score, True, relayable=query.relayable), entry, result
        )
        if decision == "serve":
            result.hit = Hit.of(entry, score, "semantic")
            result.reason = f"similarity {score:.3f}, the same question but for typos and word forms"
        return decision in ("serve", "verify")

    def _decide(self, candidate: Candidate, entry: Entry, result: LookupResult) -> str:
        """serve / refuse, or a check: the would-be hit is relayed and its answer compared (`settle`)."""
        if self._calibrator is None:
            return "serve" if candidate.accepted else "refuse"
        judgement = self._calibrator.judge(candidate)
        if judgement.checks:
            result.check = Check(judgement, entry.answer)
            result.reason = (
                f"{judgement.decision}: relayed to check a would-be hit "
                f"(estimated false-hit rate {judgement.estimate:.3f} at this score)"
            )
        if judgement.decision == "serve":
            self._metrics.false_hit_estimate.labels(candidate.tenant).set(
                self._calibrator.tenant_estimate(candidate.tenant).expected_false_hit_rate or 0.0
            )
        return judgement.decision

    async def settle(self, check: Check, fresh_answer: str) -> None:
        """Teach the calibrator whether the stored answer agreed with the fresh one: the same text once
        normalised, or answer embeddings at least `agree_similarity` apart."""
        if self._calibrator is None:
            return
        stored, fresh = check.stored_answer, fresh_answer
        agreed = " ".join(stored.lower().split()) == " ".join(fresh.lower().split())
        if not agreed and stored.strip() and fresh.strip():
            a, b = await asyncio.gather(self._batcher.embed(stored), self._batcher.embed(fresh))
            agreed = float(a @ b) >= self._agree_similarity
        self._calibrator.observe(check.judgement, agreed)
        self._checks += 1
        if self._calibration_file is not None and self._checks % SAVE_EVERY_CHECKS == 0:
            await asyncio.to_thread(write_state, self._calibrator.state(), self._calibration_file)
        judgement = check.judgement
        tenant = judgement.candidate.tenant
        self._metrics.calibration_checks.labels(
            tenant, judgement.decision, "agreed" if agreed else "wrong"
        ).inc()
        estimate = self._calibrator.tenant_estimate(tenant)
        if estimate.verified:
            self._metrics.false_hit_verified.labels(tenant).set(estimate.verified_false / estimate.verified)

    async def _answer_tier(
        self,
        query: CacheQuery,
        scope: str,
        nearest: list[tuple[Entry, float]],
        tier: AnswerTier,
        result: LookupResult,
    ) -> None:
        """Serve the first candidate whose stored answer answers `question`: the dense ones from the
        floor up, best first, then the lexical ones; a miss adds why the closest one was refused."""
        with self._stage(result, "answer_search"):
            lexical = await self._store.search_text(scope, query.question, tier.candidates)
        similarity = {entry.id: score for entry, score in nearest}
        pool = {e.id: e for e, score in nearest if score >= tier.min_similarity and not e.expired()}
        pool.update((e.id, e) for e, _ in lexical if e.id not in pool and not e.expired())
        if not pool:
            return
        with self._stage(result, "answer_check"):
            entry, verdict = await asyncio.to_thread(
                self._best_answering, query.question, list(pool.values())
            )
        if verdict.accept:
            score = similarity.get(entry.id, 0.0)
            candidate = Candidate(
                query.tenant, "answer", entry.id, verdict.score, True, relayable=query.relayable
            )
            if self._decide(candidate, entry, result) == "serve":
                result.check = None
                result.hit = Hit.of(entry, score, "answer")
                result.reason = f"similarity {score:.3f}, answer check: {verdict.reason}"
        else:
            result.reason += f"; answer tier, {len(pool)} candidate(s), the closest: {verdict.reason}"

    @staticmethod
    def _best_answering(question: str, pool: list[Entry]) -> tuple[Entry, AnswerVerdict]:
        """The first candidate (of a pool never empty) whose answer answers `question`, else the one
        that came closest."""
        judged = []
        for entry in pool:
            verdict = answer_check(question, entry.query, entry.answer)
            if verdict.accept:
                return entry, verdict
            judged.append((entry, verdict))
        return max(judged, key=lambda found: found[1].score)

    def _near_kv(self, candidates: list[tuple[Entry, float]]) -> str | None:
        """The KV blob of the best-scored live candidate that has one and reaches the reuse floor."""
        if self._reuse_floor is None:
            return None
        usable = [(score, e.kv_blob_id) for e, score in candidates if e.kv_blob_id and not e.expired()]
        best = max(usable, default=None)
        return best[1] if best is not None and best[0] >= self._reuse_floor else None

    def _near_repeat(self, question: str, under: list[tuple[Entry, float]]) -> tuple[Entry, float] | None:
        return next(((e, score) for e, score in under if self._guard.near_repeat(question, e.query)), None)

    def _judge(self, question: str, close: list[tuple[Entry, float]]) -> list[Verdict]:
        """Guard verdicts, best candidate first, stopping at the first accepted one."""
        verdicts: list[Verdict] = []
        for entry, score in close:
            verdict = self._guard.check(question, entry.query, score)
            if verdict.accept and self._answers is not None and score < self._answers.covered_below:
                missing = uncovered(question, entry.query, entry.answer)
                if missing:
                    lacks = f"the stored exchange lacks: {' '.join(missing)}"
                    verdict = AnswerVerdict(False, lacks, score, veto=True)
            verdicts.append(verdict)
            if verdict.accept:
                break
        return verdicts

    async def _exact(self, scope: str, question: str) -> Hit | None:
        if self._shared is not None:
            hot = await self._shared.get_exact(scope, question)
            if hot is not None and not self._store.masked(hot):
                return Hit.of(hot, 1.0, "shared")
        entry = await self._store.find_exact(scope, question)
        if entry is None or entry.expired():
            return None
        return Hit.of(entry, 1.0, "exact")
