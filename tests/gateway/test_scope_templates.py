"""Scopes a chat app can hit: declared variable parts of system prompts (scope templates) and a scope the
request names itself, and the parts that must stay in the scope because they change the answer."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from precog.gateway.scoping import ScopeTemplate, templated_prompt
from precog.gateway.settings import GatewaySettings
from tests.gateway.conftest import GatewayFactory
from tests.gateway.support import entries, wait_for

DATE = {"pattern": r"Today is \d{4}-\d{2}-\d{2}\.", "placeholder": "Today is {date}."}
NAME = {"pattern": r"(?<=The user is )\w+", "placeholder": "{name}", "tenants": ["default"]}


def _ask(url: str, system: str, question: str, **headers: str) -> httpx.Response:
    body = {
        "model": "test-model",
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_a_dated_prompt_hits_across_days_and_users_but_a_plan_tier_does_not(
    start_gateway: GatewayFactory,
) -> None:
    url = start_gateway(scope_templates=[DATE, NAME]).url
    monday = "You help with billing. Today is 2026-12-07. The user is Ana. Plan: free."
    first = _ask(url, monday, "How do I get a refund?")
    assert first.headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(entries(url)) == 1)

    tuesday = "You help with billing. Today is 2026-12-08. The user is Ben. Plan: free."
    hit = _ask(url, tuesday, "How do I get a refund?")
    assert hit.headers["x-precog-cache"] == "hit", hit.headers["x-precog-cache-reason"]
    assert hit.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]

    # the plan tier is not declared variable: it may change the answer, so it keeps its own scope
    pro = "You help with billing. Today is 2026-12-08. The user is Ben. Plan: pro."
    assert _ask(url, pro, "How do I get a refund?").headers["x-precog-cache"] == "miss"


def test_without_templates_every_date_is_its_own_scope(start_gateway: GatewayFactory) -> None:
    url = start_gateway().url
    _ask(url, "Today is 2026-12-07.", "How do I get a refund?")
    wait_for(lambda: len(entries(url)) == 1)
    assert _ask(url, "Today is 2026-12-08.", "How do I get a refund?").headers["x-precog-cache"] == "miss"


def test_a_request_can_name_its_scope(start_gateway: GatewayFactory) -> None:
    url = start_gateway().url
    _ask(url, "Session 81f3. Be kind.", "What are your opening hours?", **{"x-precog-scope": "help-v1"})
    wait_for(lambda: len(entries(url)) == 1)
    named = _ask(
        url, "Session 9c2a. Be kind.", "What are your opening hours?", **{"x-precog-scope": "help-v1"}
    )
    assert named.headers["x-precog-cache"] == "hit"
    other = _ask(
        url, "Session 9c2a. Be kind.", "What are your opening hours?", **{"x-precog-scope": "help-v2"}
    )
    assert other.headers["x-precog-cache"] == "miss"
    bad = _ask(url, "Be kind.", "What are your opening hours?", **{"x-precog-scope": "not a name!"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-precog-scope"


def test_templates_apply_per_tenant_and_are_checked_and_changed_through_admin(
    start_gateway: GatewayFactory,
) -> None:
    templates = [ScopeTemplate(**DATE), ScopeTemplate(**NAME)]
    assert templated_prompt("Today is 2026-12-07. The user is Ana.", "default", templates) == (
        "Today is {date}. The user is {name}."
    )
    assert templated_prompt("The user is Ana.", "acme", templates) == "The user is Ana."
    with pytest.raises(ValidationError, match="not a regular expression"):
        GatewaySettings(scope_templates=[{"pattern": "(unclosed"}])
    with pytest.raises(ValidationError, match="empty string"):
        GatewaySettings(scope_templates=[{"pattern": "x*"}])

    url = start_gateway(admin_token="root").url
    auth = {"authorization": "Bearer root"}
    assert httpx.get(f"{url}/admin/config", headers=auth).json()["scope_templates"] == []
    patched = httpx.patch(f"{url}/admin/config", json={"scope_templates": [DATE]}, headers=auth)
    assert patched.status_code == 200 and patched.json()["scope_templates"][0]["pattern"] == DATE["pattern"]
    refused = httpx.patch(f"{url}/admin/config", json={"scope_templates": [{"pattern": "("}]}, headers=auth)
    assert refused.status_code == 400
    _ask(url, "Today is 2026-12-07.", "How do I get a refund?")
    wait_for(lambda: len(httpx.get(f"{url}/admin/entries", headers=auth).json()["entries"]) == 1)
    assert _ask(url, "Today is 2026-12-09.", "How do I get a refund?").headers["x-precog-cache"] == "hit"
