"""The false-hit bound: the calibrator's rules on their own, then the gateway learning from relayed checks
over real HTTP (a band closes after a wrong answer, an entry found wrong is never served at that score)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from precog.gateway.calibration import CalibrationPolicy, Calibrator, Candidate, wilson_interval
from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState, answer_for
from tests.gateway.support import chat, entries, wait_for

POINT = 0.84


def calibrator(**policy: float) -> Calibrator:
    return Calibrator(CalibrationPolicy(**policy), {"semantic": POINT, "answer": 0.0})  # type: ignore[arg-type]


def ask(
    c: Calibrator, score: float, entry: str = "e1", tenant: str = "t", accepted: bool | None = None
) -> str:
    accepted = score >= POINT if accepted is None else accepted
    judgement = c.judge(Candidate(tenant, "semantic", entry, score, accepted))
    return judgement.decision


def test_cold_start_is_the_shipped_operating_point() -> None:
    c = calibrator(verify_every=1000)
    assert ask(c, 0.95) == "serve"
    assert ask(c, 0.85) == "serve"
    assert ask(c, 0.7) == "explore"  # the guard refused it, but it may earn its band the right to serve
    assert ask(c, 0.3) == "refuse"
    vetoed = c.judge(Candidate("t", "semantic", "e1", 0.99, False, vetoed=True))
    assert vetoed.decision == "refuse"


def test_every_nth_servable_hit_is_verified_and_counted_apart() -> None:
    c = calibrator(verify_every=3)
    decisions = [c.judge(Candidate("t", "semantic", f"e{i}", 0.9, True)) for i in range(6)]
    assert [d.decision for d in decisions] == ["serve", "serve", "verify", "serve", "serve", "verify"]
    c.observe(decisions[2], agreed=True)
    c.observe(decisions[5], agreed=False)
    estimate = c.tenant_estimate("t")
    assert (estimate.served, estimate.verified, estimate.verified_false) == (4, 2, 1)
    assert estimate.verified_interval == wilson_interval(1, 2)


def test_a_request_that_may_not_be_relayed_is_served_or_refused_never_checked() -> None:
    c = calibrator(verify_every=2)
    held = [c.judge(Candidate("t", "semantic", f"e{i}", 0.9, True, relayable=False)) for i in range(4)]
    assert [j.decision for j in held] == ["serve"] * 4  # no verification slot is taken by them
    assert c.judge(Candidate("t", "semantic", "e9", 0.7, False, relayable=False)).decision == "refuse"
    assert ask(c, 0.9) == "serve"
    assert ask(c, 0.9) == "verify"  # the sampling of relayable hits is unchanged
    strict = calibrator(verify_every=1000, check_new_entries=True)
    assert strict.judge(Candidate("t", "semantic", "new", 0.9, True, relayable=False)).decision == "serve"


def test_a_wrong_answer_closes_its_band_until_enough_agreements_reopen_it() -> None:
    c = calibrator(verify_every=1000)
    first = c.judge(Candidate("t", "semantic", "e1", 0.9, True))
    c.observe(first, agreed=False)
    assert ask(c, 0.9, entry="e2") == "explore"  # the whole band now needs evidence
    assert ask(c, 0.97, entry="e2") == "serve"  # another band is untouched
    agreements = 0
    while ask(c, 0.9, entry=f"new{agreements}") == "explore":  # new entries: no entry's own evidence
        c.observe(c.judge(Candidate("t", "semantic", f"new{agreements}", 0.9, True)), agreed=True)
        agreements += 1
        assert agreements < 200
    # (δ/2 · 20 + 1) / (20 + 1 + n) <= δ needs n >= 90 agreements after one false hit
    assert 85 <= agreements <= 95


def test_an_entry_found_wrong_is_not_served_at_that_score_again() -> None:
    c = calibrator(verify_every=1000)
    for _ in range(200):  # a band with plenty of clean evidence
        c.observe(c.judge(Candidate("t", "semantic", "good", 0.9, True)), agreed=True)
    wrong = c.judge(Candidate("t", "semantic", "bad", 0.9, True))
    c.observe(wrong, agreed=False)
    assert ask(c, 0.9, entry="good") == "serve"
    assert ask(c, 0.9, entry="bad") == "refuse"
    assert ask(c, 0.85, entry="bad") == "refuse"
    assert ask(c, 0.95, entry="bad") == "serve"


def test_an_entry_checked_right_is_served_from_that_score_up_and_a_wrong_one_takes_it_back() -> None:
    c = calibrator(verify_every=1000)
    explored = c.judge(Candidate("t", "semantic", "e1", 0.7, False))
    assert explored.decision == "explore"
    c.observe(explored, agreed=True)
    assert ask(c, 0.7, entry="e1") == "serve"
    assert ask(c, 0.75, entry="e1") == "serve"
    assert ask(c, 0.66, entry="e1") == "explore"
    assert ask(c, 0.7, entry="e2") == "explore"  # the band itself has not opened
    c.observe(c.judge(Candidate("t", "semantic", "e1", 0.66, False)), agreed=False)
    assert ask(c, 0.75, entry="e1") == "explore"
    assert ask(c, 0.66, entry="e1") == "refuse"


def test_a_band_under_the_point_opens_on_evidence_and_only_for_its_tenant() -> None:
    c = calibrator(verify_every=1000)
    n = 0
    while ask(c, 0.8, entry=f"q{n}", tenant="flooder") == "explore":
        judgement = c.judge(Candidate("flooder", "semantic", f"q{n}", 0.8, False))
        c.observe(judgement, agreed=True)
        n += 1
        assert n < 500
    assert ask(c, 0.8, entry="x", tenant="flooder") == "serve"
    # the flood moved nothing of another tenant's: its band under the point still explores
    assert ask(c, 0.8, entry="x", tenant="victim") == "explore"
    assert c.estimate_at("victim", "semantic", 0.8) > c.policy.max_false_hit_rate


def test_a_flood_of_easy_agreements_cannot_open_a_harder_band() -> None:
    """Poisoning: agreements at high scores never dilute a lower band's errors (bands are separate)."""
    c = calibrator(verify_every=1000)
    wrong = c.judge(Candidate("t", "semantic", "trap", 0.85, True))
    c.observe(wrong, agreed=False)
    for i in range(1000):
        c.observe(c.judge(Candidate("t", "semantic", f"easy{i}", 0.99, True)), agreed=True)
    assert c.estimate_at("t", "semantic", 0.85) > c.policy.max_false_hit_rate
    assert ask(c, 0.85, entry="other") == "explore"


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_false_hit_rate"):
        CalibrationPolicy(max_false_hit_rate=0.0)
    with pytest.raises(ValueError, match="verify_every"):
        CalibrationPolicy(verify_every=0)


def _ask(url: str, question: str, **extra: float) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=chat(question, **extra), timeout=30)


def test_the_gateway_checks_would_be_hits_and_stops_serving_a_wrong_entry(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, tmp_path: Path
) -> None:
    store = tmp_path / "calibrated-store"
    server = start_gateway(calibration_verify_every=2, store_path=store)
    url = server.url
    stored = "How tall is the Eiffel Tower in meters?"
    _ask(url, stored)
    wait_for(lambda: len(entries(url)) == 1)

    first = _ask(url, "What is the height of the Eiffel Tower in meters?")
    assert first.headers["x-precog-cache"] == "hit", first.headers["x-precog-cache-reason"]

    paraphrase = "What's the height of the Eiffel Tower in meters?"
    upstream_state.answers[paraphrase] = "It is 330 metres tall since the antenna was added in 2022."
    checked = _ask(url, paraphrase, temperature=1.0)  # a sampled answer: relayed, never written back
    assert checked.headers["x-precog-cache"] == "miss"
    assert checked.headers["x-precog-cache-reason"].startswith("similarity"), checked.headers
    assert "verify: relayed to check a would-be hit" in checked.headers["x-precog-cache-reason"]
    assert checked.json()["choices"][0]["message"]["content"] == upstream_state.answers[paraphrase]

    def verified() -> list[dict]:
        return httpx.get(f"{url}/admin/stats", timeout=10).json()["false_hits"]

    wait_for(lambda: bool(verified()) and verified()[0]["verified"] == 1)
    row = verified()[0]
    assert (row["tenant"], row["verified_false"], row["served"]) == ("default", 1, 1)
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'precog_gateway_false_hit_rate_verified{tenant="default"} 1.0' in metrics
    assert (
        'precog_gateway_calibration_checks_total{decision="verify",result="wrong",tenant="default"} 1.0'
        in metrics
    )

    # the entry found wrong for that question is not served for it again (nor at a lower score)
    again = _ask(url, paraphrase, temperature=1.0)
    assert again.headers["x-precog-cache"] == "miss", again.headers["x-precog-cache-reason"]
    assert len(entries(url)) == 1
    # "what's" is "what is" once normalised: the paraphrase served before has the same guard score
    before = _ask(url, "What is the height of the Eiffel Tower in meters?", temperature=1.0)
    assert before.headers["x-precog-cache"] == "miss", before.headers["x-precog-cache-reason"]

    server.stop()  # what was learned is saved beside the store and taken up by the next process
    assert Path(f"{store}.calibration.json").is_file()
    restarted = start_gateway(calibration_verify_every=2, store_path=store).url
    after_restart = _ask(restarted, paraphrase, temperature=1.0)
    assert after_restart.headers["x-precog-cache"] == "miss", after_restart.headers["x-precog-cache-reason"]
    assert httpx.get(f"{restarted}/admin/stats", timeout=10).json()["false_hits"][0]["verified_false"] == 1


def test_only_if_cached_serves_the_would_be_hit_a_check_would_have_relayed(
    start_gateway: GatewayFactory,
) -> None:
    url = start_gateway(calibration_verify_every=1).url  # every relayable would-be hit is checked
    _ask(url, "How tall is the Eiffel Tower in meters?")
    wait_for(lambda: len(entries(url)) == 1)
    question = "What is the height of the Eiffel Tower in meters?"
    held = httpx.post(
        f"{url}/v1/chat/completions",
        json=chat(question),
        headers={"x-precog-cache-control": "only-if-cached"},
        timeout=30,
    )
    assert held.status_code == 200, held.text
    assert held.headers["x-precog-cache"] == "hit", held.headers["x-precog-cache-reason"]
    checked = _ask(url, question)
    assert "verify: relayed to check" in checked.headers["x-precog-cache-reason"]


def test_calibration_off_is_the_fixed_guard(start_gateway: GatewayFactory) -> None:
    url = start_gateway(calibration=False, calibration_verify_every=1).url
    _ask(url, "How tall is the Eiffel Tower in meters?")
    wait_for(lambda: len(entries(url)) == 1)
    for _ in range(3):
        hit = _ask(url, "What is the height of the Eiffel Tower in meters?")
        assert hit.headers["x-precog-cache"] == "hit"
    assert httpx.get(f"{url}/admin/stats", timeout=10).json()["false_hits"] is None


def test_a_flood_from_another_tenant_moves_nothing_of_the_victims(
    start_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    """Poisoning over HTTP: another tenant's wrong near-duplicates and its checks (right and wrong) never
    reach the victim's answers or the victim's calibration."""
    keys = {"key-victim": "victim", "key-attacker": "attacker"}
    url = start_gateway(api_keys=keys, admin_token="root", calibration_verify_every=3).url

    def ask(key: str, question: str, **extra: float) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        return httpx.post(
            f"{url}/v1/chat/completions", json=chat(question, **extra), headers=headers, timeout=30
        )

    def rows() -> dict[str, dict]:
        stats = httpx.get(f"{url}/admin/stats", headers={"authorization": "Bearer root"}, timeout=10).json()
        return {row["tenant"]: row for row in stats["false_hits"]}

    stored = "How tall is the Eiffel Tower in meters?"
    ask("key-victim", stored)
    wait_for(
        lambda: (
            int(
                httpx.get(f"{url}/admin/stats", headers={"authorization": "Bearer root"}, timeout=10).json()[
                    "store"
                ]["entries"]
            )
            == 1
        )
    )
    served = ask("key-victim", "What is the height of the Eiffel Tower in meters?")
    assert served.headers["x-precog-cache"] == "hit"
    victim_entry = served.headers["x-precog-entry-id"]
    before = rows()["victim"]

    poison = [f"How tall is the Eiffel Tower in meters{'?' * n}" for n in range(1, 4)] + [
        "How tall is the Eiffel Tower in metres?",
        "Height of the Eiffel Tower in meters?",
    ]
    for question in poison:  # the attacker's own wrong answers, written back into its scope
        upstream_state.answers[question] = "The Eiffel Tower is 12 meters tall."
        ask("key-attacker", question)
    for n in range(12):  # and a stream of checks in its scope, right and wrong
        paraphrase = "What is the height of the Eiffel Tower in meters?"
        upstream_state.answers[paraphrase] = "wrong" if n % 2 else "The Eiffel Tower is 12 meters tall."
        ask("key-attacker", paraphrase, temperature=1.0)
    wait_for(lambda: rows().get("attacker", {}).get("verified", 0) >= 2)

    after = ask("key-victim", "What is the height of the Eiffel Tower in meters?")
    assert after.headers["x-precog-cache"] == "hit", after.headers["x-precog-cache-reason"]
    assert after.headers["x-precog-entry-id"] == victim_entry
    assert "12 meters" not in after.json()["choices"][0]["message"]["content"]
    victim = rows()["victim"]
    assert (victim["verified"], victim["verified_false"], victim["explored"]) == (
        before["verified"],
        before["verified_false"],
        before["explored"],
    )
    assert victim["served"] == before["served"] + 1


def test_what_was_learned_survives_a_save_and_load(tmp_path: Path) -> None:
    c = calibrator(verify_every=1000)
    c.observe(c.judge(Candidate("t", "semantic", "bad", 0.9, True)), agreed=False)
    c.observe(c.judge(Candidate("t", "semantic", "good", 0.7, False)), agreed=True)
    path = tmp_path / "calibration.json"
    c.save(path)
    again = calibrator(verify_every=1000)
    again.load(path)
    assert again.state() == c.state()
    assert ask(again, 0.9, entry="bad") == "refuse"
    assert ask(again, 0.9, entry="new") == "explore"  # the band that saw the wrong answer stays closed
    assert ask(again, 0.7, entry="good") == "serve"

    retrained = Calibrator(CalibrationPolicy(verify_every=1000), {"semantic": 0.8})
    retrained.load(path)  # other accept points: the bands mean other scores now, the entries do not
    assert retrained.state()["bands"] == []
    assert retrained.state()["entry_false_at"] == {"bad": 0.9}
    path.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="version"):
        calibrator().load(path)


def test_a_near_miss_checked_right_becomes_an_alias_and_one_checked_wrong_does_not(
    start_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    """Krites' alias path: relayed now, judged against the fresh answer in the background, then served."""
    url = start_gateway().url
    stored = "How tall is the Eiffel Tower in meters?"
    _ask(url, stored)
    wait_for(lambda: len(entries(url)) == 1)
    entry_id = entries(url)[0]["id"]

    def checks(result: str) -> str:
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        labels = f'decision="explore",result="{result}",tenant="default"'
        prefix = f"precog_gateway_calibration_checks_total{{{labels}}}"
        return next((line.split()[-1] for line in metrics.splitlines() if line.startswith(prefix)), "0")

    near = "How high is the Eiffel Tower in meters?"  # cosine 0.98, the guard says no (p 0.72: high vs tall)
    upstream_state.answers[near] = answer_for(stored)
    first = _ask(url, near, temperature=1.0)
    assert first.headers["x-precog-cache"] == "miss"
    assert "explore: relayed to check a would-be hit" in first.headers["x-precog-cache-reason"]
    wait_for(lambda: checks("agreed") == "1.0")
    second = _ask(url, near, temperature=1.0)
    assert second.headers["x-precog-cache"] == "hit", second.headers["x-precog-cache-reason"]
    assert second.headers["x-precog-entry-id"] == entry_id

    _ask(url, "How tall is the Eiffel Tower in feet?")
    wait_for(lambda: len(entries(url)) == 2)
    trap = "How high is the Eiffel Tower in feet?"
    upstream_state.answers[trap] = "It is 1,083 feet tall."
    assert _ask(url, trap, temperature=1.0).headers["x-precog-cache"] == "miss"
    wait_for(lambda: checks("wrong") == "1.0")
    assert _ask(url, trap, temperature=1.0).headers["x-precog-cache"] == "miss"


def test_check_new_entries_relays_each_entrys_first_would_be_hit() -> None:
    c = calibrator(verify_every=1000, check_new_entries=True)
    first = c.judge(Candidate("t", "semantic", "e1", 0.95, True))
    assert first.decision == "explore"
    c.observe(first, agreed=True)
    assert ask(c, 0.95, entry="e1") == "serve"
    trap = c.judge(Candidate("t", "semantic", "e2", 0.95, True))
    c.observe(trap, agreed=False)
    assert ask(c, 0.95, entry="e2") == "refuse"
