"""The dashboard in Debian's headless chromium: it renders real numbers from a running gateway."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import GatewayFactory
from tests.gateway.support import chat, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PRECOG_TEST_ARTIFACTS", "var/test-artifacts"))

pytestmark = [pytest.mark.browser, pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no chromium")]


@pytest.mark.slow
def test_dashboard_shows_live_statistics_and_finds_entries(start_gateway: GatewayFactory) -> None:
    from playwright.sync_api import sync_playwright

    url = start_gateway(admin_token="dash").url
    admin = {"authorization": "Bearer dash"}
    questions = ["What is the tallest mountain?", "What is the longest river?", "What is the largest ocean?"]
    for question in questions:
        httpx.post(f"{url}/v1/chat/completions", json=chat(question), timeout=30)
    wait_for(lambda: len(httpx.get(f"{url}/admin/entries", headers=admin).json()["entries"]) == 3)
    for _ in range(3):
        httpx.post(f"{url}/v1/chat/completions", json=chat(questions[0]), timeout=30)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(f"{url}/dashboard#token=dash")
            page.wait_for_function("document.getElementById('kpi-requests').textContent !== '–'")
            assert page.text_content("#kpi-requests") == "6"
            assert page.text_content("#kpi-hit-rate") == "50.0 %"
            assert page.text_content("#kpi-entries") == "3"
            assert page.text_content("#kpi-breaker") == "closed"
            assert page.text_content("#kpi-hit-p50").endswith(" ms")
            assert page.locator("#chart-hit-rate canvas").count() == 1
            assert page.locator("#chart-latency canvas").count() == 1
            top = page.locator("#top-entries tbody tr").first
            assert top.locator("td").nth(0).text_content() == "3"
            assert top.locator("td").nth(1).text_content() == questions[0]

            page.fill("#search", "river")
            page.click("#search-form button")
            page.wait_for_selector("#search-results tbody tr")
            assert page.locator("#search-results tbody tr").count() == 1
            assert page.locator("#search-results tbody td").nth(1).text_content() == questions[1]
            assert failed == []
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
