"""Keeps each tenant's false-hit rate under the bound the admin sets, learning from the traffic itself.

vCache's idea (learn when a hit is safe from answers checked online, under a user-set error bound δ), made
to work where most entries are asked once: the evidence is pooled per tenant, tier and band of the
deciding score (the guard's P(same) in the question tier), and each entry also keeps its own veto.

- A band's false-hit estimate is a Beta posterior: the prior says the shipped operating point is right
  (δ/2 at or above it; 1 - score below it, held weakly), and every checked would-be hit moves it.
- A would-be hit in a band whose estimate is ≤ δ is served; every `verify_every`-th of them per tenant is
  relayed as well and its fresh answer compared with the stored one, so the served false-hit rate is
  measured without bias and a band that goes bad closes.
- A candidate the guard scored from `explore_from` up, in a band not (yet) under δ, is relayed and
  compared: that is how a band below the shipped point earns the right to serve.
- Each entry keeps its own threshold, as in vCache: found wrong for a question at score s, it is never
  served at s or below again; found right at s (and never wrong), it is served from s up, whatever its
  band says, so a question that was checked once is answered from storage when it comes again.

Rules that fail closed (a changed number, negation, a swapped question word) are vetoes: no evidence
can open them. State is per gateway process, saved beside the store (`save`/`load`, JSON written
atomically) on stop and every `lookup.SAVE_EVERY_CHECKS` checks, so a restart keeps what was learned.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Decision = Literal["serve", "verify", "explore", "refuse"]

_BAND_WIDTH = 0.04
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CalibrationPolicy:
    max_false_hit_rate: float = 0.01
    verify_every: int = 20
    explore_from: float = 0.5
    prior_strength: float = 20.0
    prior_strength_below: float = 4.0
    check_new_entries: bool = False  # relay and compare an entry's first would-be hit (vCache explores so)

    def __post_init__(self) -> None:
        if not 0.0 < self.max_false_hit_rate < 1.0:
            raise ValueError(f"max_false_hit_rate must lie in (0, 1), got {self.max_false_hit_rate}")
        if self.verify_every < 1:
            raise ValueError(f"verify_every must be at least 1, got {self.verify_every}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One would-be hit as the calibrator sees it: whose, which tier, the deciding score, the guard's
    own verdict, whether a rule vetoed it, and whether its request may be relayed to check it."""

    tenant: str
    tier: str
    entry_id: str
    score: float
    accepted: bool
    vetoed: bool = False
    relayable: bool = True


@dataclass(frozen=True, slots=True)
class Judgement:
    decision: Decision
    estimate: float  # the band's posterior false-hit probability when judged
    candidate: Candidate

    @property
    def checks(self) -> bool:
        """Relay and compare the fresh answer with the stored one."""
        return self.decision in ("verify", "explore")


@dataclass(frozen=True, slots=True)
class TenantEstimate:
    """What a tenant was served and what the checks found; `verified_*` come from the unbiased sample
    of served-eligible hits, `expected_false_hit_rate` from the bands' posteriors at serve time."""

    tenant: str
    served: int
    expected_false_hit_rate: float | None
    verified: int
    verified_false: int
    verified_interval: tuple[float, float] | None
    explored: int
    max_false_hit_rate: float


@dataclass(slots=True)
class _Band:
    checked: int = 0
    false: int = 0


@dataclass(slots=True)
class _Tally:
    served: int = 0
    expected_false: float = 0.0
    eligible: int = 0
    verified: int = 0
    verified_false: int = 0
    explored: int = 0


class Calibrator:
    def __init__(self, policy: CalibrationPolicy, accept_points: dict[str, float]) -> None:
        """`accept_points`: per tier, the score from which the shipped guard accepts (its prior)."""
        self.policy = policy
        self._points = accept_points
        self._bands: dict[tuple[str, str, int], _Band] = defaultdict(_Band)
        self._entry_false_at: dict[str, float] = {}
        self._entry_right_from: dict[str, float] = {}
        self._tallies: dict[str, _Tally] = defaultdict(_Tally)

    def judge(self, candidate: Candidate) -> Judgement:
        """A candidate whose request may not be relayed (only-if-cached) is never checked: what the policy
        would serve is served (it takes no verification slot), the rest is refused."""
        policy = self.policy
        may_check = candidate.relayable
        if candidate.vetoed:
            return Judgement("refuse", 1.0, candidate)
        estimate = self.estimate_at(candidate.tenant, candidate.tier, candidate.score)
        wrong_before = self._entry_false_at.get(candidate.entry_id)
        if wrong_before is not None and candidate.score <= wrong_before:
            return Judgement("refuse", estimate, candidate)
        tally = self._tallies[candidate.tenant]
        learnable = candidate.accepted or candidate.score >= policy.explore_from
        right_from = self._entry_right_from.get(candidate.entry_id, math.inf)
        if learnable and (estimate <= policy.max_false_hit_rate or candidate.score >= right_from):
            if may_check and policy.check_new_entries and right_from == math.inf:
                tally.explored += 1
                return Judgement("explore", estimate, candidate)
            if may_check:
                tally.eligible += 1
                if tally.eligible % policy.verify_every == 0:
                    return Judgement("verify", estimate, candidate)
            tally.served += 1
            tally.expected_false += estimate
            return Judgement("serve", estimate, candidate)
        if learnable and may_check:
            tally.explored += 1
            return Judgement("explore", estimate, candidate)
        return Judgement("refuse", estimate, candidate)

    def observe(self, judgement: Judgement, agreed: bool) -> None:
        """The fresh answer to a checked would-be hit agreed with the stored one, or not."""
        candidate = judgement.candidate
        band = self._bands[self._band_key(candidate.tenant, candidate.tier, candidate.score)]
        band.checked += 1
        entry = candidate.entry_id
        if agreed:
            if entry not in self._entry_false_at:
                self._entry_right_from[entry] = min(
                    self._entry_right_from.get(entry, math.inf), candidate.score
                )
        else:
            band.false += 1
            self._entry_false_at[entry] = max(self._entry_false_at.get(entry, -math.inf), candidate.score)
            self._entry_right_from.pop(entry, None)
        if judgement.decision == "verify":
            tally = self._tallies[candidate.tenant]
            tally.verified += 1
            tally.verified_false += not agreed

    def estimate_at(self, tenant: str, tier: str, score: float) -> float:
        """The posterior false-hit probability of serving `score` in this tenant's tier."""
        key = self._band_key(tenant, tier, score)
        band = self._bands.get(key, _Band())
        prior, strength = self._prior(tier, key[2])
        return (prior * strength + band.false) / (strength + band.checked)

    def tenant_estimate(self, tenant: str) -> TenantEstimate:
        tally = self._tallies.get(tenant, _Tally())
        return TenantEstimate(
            tenant=tenant,
            served=tally.served,
            expected_false_hit_rate=tally.expected_false / tally.served if tally.served else None,
            verified=tally.verified,
            verified_false=tally.verified_false,
            verified_interval=wilson_interval(tally.verified_false, tally.verified),
            explored=tally.explored,
            max_false_hit_rate=self.policy.max_false_hit_rate,
        )

    def tenants(self) -> list[str]:
        return sorted(self._tallies)

    def state(self) -> dict[str, Any]:
        """Everything learned, as a JSON-ready copy (safe to write from another thread)."""
        return {
            "version": _STATE_VERSION,
            "points": dict(self._points),
            "bands": [[*key, band.checked, band.false] for key, band in self._bands.items() if band.checked],
            "entry_false_at": dict(self._entry_false_at),
            "entry_right_from": dict(self._entry_right_from),
            "tallies": {tenant: asdict(tally) for tenant, tally in self._tallies.items()},
        }

    def save(self, path: Path) -> None:
        write_state(self.state(), path)

    def load(self, path: Path) -> None:
        """Take up what a previous process learned; evidence gathered under other accept points (a
        retrained guard) is dropped, since its bands no longer mean the same scores."""
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"calibration state version {state.get('version')!r} is not {_STATE_VERSION}")
        bands = {
            (str(tenant), str(tier), int(band)): _Band(int(checked), int(false))
            for tenant, tier, band, checked, false in state["bands"]
        }
        false_at = {str(k): float(v) for k, v in state["entry_false_at"].items()}
        right_from = {str(k): float(v) for k, v in state["entry_right_from"].items()}
        tallies = {str(tenant): _Tally(**tally) for tenant, tally in state["tallies"].items()}
        # Parsed whole before anything is taken: a damaged file leaves this calibrator at its prior.
        if state["points"] == self._points:
            self._bands.update(bands)
        self._entry_false_at.update(false_at)
        self._entry_right_from.update(right_from)
        self._tallies.update(tallies)

    def _band_key(self, tenant: str, tier: str, score: float) -> tuple[str, str, int]:
        """Bands are counted from the tier's accept point, so none straddles it."""
        return tenant, tier, math.floor((score - self._points.get(tier, 0.0)) / _BAND_WIDTH)

    def _prior(self, tier: str, band: int) -> tuple[float, float]:
        policy = self.policy
        if band >= 0:
            return policy.max_false_hit_rate / 2, policy.prior_strength
        upper = self._points.get(tier, 0.0) + (band + 1) * _BAND_WIDTH
        return min(1.0, max(policy.max_false_hit_rate, 1.0 - upper)), policy.prior_strength_below


def write_state(state: dict[str, Any], path: Path) -> None:
    """Write a calibrator's state atomically: a crash leaves the old file or the new one."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        json.dump(state, out)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion; None without trials."""
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
