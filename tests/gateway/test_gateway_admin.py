"""The admin API, metrics and probes, on a gateway with an admin token and served traffic."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from precog.gateway import GatewaySettings
from precog.store import Store
from tests.gateway.conftest import GatewayFactory
from tests.gateway.support import chat, wait_for

ADMIN = {"authorization": "Bearer root"}


def _ask(url: str, question: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=chat(question), timeout=30)


def _entries(url: str, **params: object) -> list[dict]:
    response = httpx.get(f"{url}/admin/entries", params=params, headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def test_admin_needs_the_token(start_gateway: GatewayFactory) -> None:
    url = start_gateway(admin_token="root").url
    for method, path in [
        ("GET", "/admin/stats"),
        ("GET", "/admin/entries"),
        ("POST", "/admin/invalidate"),
        ("PATCH", "/admin/config"),
        ("POST", "/admin/snapshot"),
    ]:
        response = httpx.request(method, f"{url}{path}", headers={"authorization": "Bearer nope"}, timeout=10)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "invalid_admin_token"


def test_stats_entries_invalidate_config_and_snapshot(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    store_path = tmp_path / "admin-store"
    url = start_gateway(admin_token="root", store_path=store_path).url
    for question in ("Where is Lisbon?", "Where is Oslo?", "Who wrote Hamlet?"):
        assert _ask(url, question).headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(_entries(url)) == 3)
    assert _ask(url, "Where is Lisbon?").headers["x-precog-cache"] == "hit"
    assert _ask(url, "Where is Lisbon?").headers["x-precog-cache"] == "hit"

    stats = httpx.get(f"{url}/admin/stats", headers=ADMIN, timeout=10).json()
    assert stats["windows"]["5m"]["requests"] == 5
    assert stats["windows"]["5m"]["hit_rate"] == 0.4
    assert stats["by_tenant_model"] == [
        {"tenant": "default", "model": "test-model", "requests": 5, "hit_rate": 0.4, "hit": 2, "miss": 3}
    ]
    assert sum(stats["latency_ms"]["hit"]["counts"]) == 2 and stats["latency_ms"]["hit"]["p50_ms"] > 0
    assert stats["tokens_saved"] > 0 and stats["cost_saved_usd"] > 0
    assert stats["store"]["entries"] == 3

    lisbon = _entries(url, q="lisbon")
    assert [e["query"] for e in lisbon] == ["Where is Lisbon?"]
    one = httpx.get(f"{url}/admin/entries/{lisbon[0]['id']}", headers=ADMIN, timeout=10).json()
    assert one["hits"] == 2 and one["source"] == "write-back" and one["meta"]["tenant"] == "default"
    missing = httpx.get(f"{url}/admin/entries/doesnotexist", headers=ADMIN, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "entry_not_found"

    deleted = httpx.delete(f"{url}/admin/entries/{lisbon[0]['id']}", headers=ADMIN, timeout=10)
    assert deleted.json() == {"invalidated": 1}
    assert _ask(url, "Where is Lisbon?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(_entries(url)) == 3)

    by_text = httpx.post(f"{url}/admin/invalidate", json={"substring": "where is"}, headers=ADMIN, timeout=10)
    assert by_text.json() == {"invalidated": 2}
    assert [e["query"] for e in _entries(url)] == ["Who wrote Hamlet?"]
    empty = httpx.post(f"{url}/admin/invalidate", json={}, headers=ADMIN, timeout=10)
    assert empty.status_code == 400
    blank = httpx.post(f"{url}/admin/invalidate", json={"substring": " \r\n"}, headers=ADMIN, timeout=10)
    assert blank.status_code == 400 and blank.json()["error"]["param"] == "substring", blank.text
    by_age = httpx.post(f"{url}/admin/invalidate", json={"older_than_s": 3600}, headers=ADMIN, timeout=10)
    assert by_age.json() == {"invalidated": 0}

    config = httpx.patch(
        f"{url}/admin/config", json={"tenant_thresholds": {"default": 0.5}}, headers=ADMIN, timeout=10
    )
    assert config.json()["tenant_thresholds"] == {"default": 0.5}
    bad = httpx.patch(f"{url}/admin/config", json={"similarity_threshold": 1.5}, headers=ADMIN, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "similarity_threshold"

    snap = httpx.post(f"{url}/admin/snapshot", json={"name": "first"}, headers=ADMIN, timeout=60)
    assert snap.status_code == 200, snap.text
    assert (
        httpx.post(f"{url}/admin/snapshot", json={"name": "first"}, headers=ADMIN, timeout=60).status_code
        == 409
    )
    with Store.open(snap.json()["path"], create=False, progress=False) as copy:
        assert [e.query for e in copy.entries()] == ["Who wrote Hamlet?"]


def test_metrics_and_probes(start_gateway: GatewayFactory) -> None:
    url = start_gateway().url
    _ask(url, "Is it raining?")
    wait_for(lambda: len(_entries(url)) == 1)
    _ask(url, "Is it raining?")
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'precog_gateway_requests_total{endpoint="chat",outcome="hit"} 1.0' in metrics
    assert 'precog_gateway_requests_total{endpoint="chat",outcome="miss"} 1.0' in metrics
    assert 'precog_gateway_stage_seconds_count{stage="exact"} 2.0' in metrics
    assert "precog_gateway_hit_rate 0.5" in metrics
    assert 'precog_gateway_writebacks_total{result="stored"} 1.0' in metrics
    assert "precog_gateway_breaker_state 0.0" in metrics
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "upstream": "ok"}
    models = httpx.get(f"{url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["test-model", "other-model"]


def test_settings_come_from_environment_and_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOG_GATEWAY_SIMILARITY_THRESHOLD", "0.9")
    monkeypatch.setenv("PRECOG_GATEWAY_API_KEYS", '{"k1": "acme"}')
    settings = GatewaySettings()
    assert settings.threshold_for("acme") == 0.9 and not settings.open_tenancy
    monkeypatch.setenv("PRECOG_GATEWAY_UPSTREAM_URL", "ftp://nope")
    with pytest.raises(ValueError, match="upstream_url"):
        GatewaySettings()
