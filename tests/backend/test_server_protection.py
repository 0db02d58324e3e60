"""The Pitfalls safeguard over real HTTP: the chat endpoint derives the protected token ranges from the
chat template (system prompt, `<kv-protect>` spans) token-exactly, and compression keeps them."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from precog.backend import Engine
from precog.backend.server.protection import strip_marks
from tests.backend.conftest import wait_for_idle

pytestmark = pytest.mark.slow

SYSTEM = "Answer in uppercase letters only. End every answer with the word DONE."
MARKED = "Mention the city of Paris."
USER = f"Here is my question.\n<kv-protect>{MARKED}</kv-protect>\nWhat do people eat for breakfast?"


def test_strip_marks_returns_the_clean_text_and_marked_spans() -> None:
    text, spans = strip_marks("a <kv-protect>bc</kv-protect> d <kv-protect>e</kv-protect>")
    assert text == "a bc d e"
    assert [text[s:e] for s, e in spans] == ["bc", "e"]
    assert strip_marks("no markers") == ("no markers", [])
    for bad in ("<kv-protect>open", "close</kv-protect>", "<kv-protect><kv-protect>x</kv-protect>"):
        with pytest.raises(ValueError, match="kv-protect"):
            strip_marks(bad)


def expected_ranges(engine: Engine, rendered: str, spans: list[str]) -> list[tuple[int, int]]:
    """Token ranges found by tokenizing the rendered prompt up to each span's start and end (a method
    independent of the server's offset mapping)."""
    ranges = []
    for span in spans:
        at = rendered.index(span)
        before = engine.tokenizer(rendered[:at], add_special_tokens=False).input_ids
        through = engine.tokenizer(rendered[: at + len(span)], add_special_tokens=False).input_ids
        ranges.append((len(before), len(through)))
    return ranges


def chat_body(engine: Engine, compression: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": engine.model_name,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "max_tokens": 4,
        "temperature": 0,
        "kv_compression": compression,
    }


def compactions(caplog: pytest.LogCaptureFixture, request_id: str) -> list[Any]:
    """The engine's "kv compressed" log records of a request (extras: after, protected, kept, ...)."""
    return [
        r
        for r in caplog.records
        if r.getMessage() == "kv compressed" and r.__dict__["request_id"] == request_id
    ]


def test_the_server_protects_the_system_prompt_and_marked_spans_token_exactly(
    server_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="precog.backend.engine.kv.press")
    user = USER.replace("<kv-protect>", "").replace("</kv-protect>", "")
    plain = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    rendered = str(engine.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True))
    ids = engine.tokenizer(rendered, add_special_tokens=False).input_ids
    expected = expected_ranges(engine, rendered, [SYSTEM, MARKED])
    assert [engine.tokenizer.decode(ids[a:b]) for a, b in expected] == [SYSTEM, MARKED]

    replies = {}
    for protect in (None, False):
        option: dict[str, Any] = {"method": "knorm", "ratio": 0.75}
        if protect is None:
            option["decode_interval"] = 2  # compresses again after the 2nd generated token
        else:
            option["protect"] = protect
        response = httpx.post(
            f"{server_url}/v1/chat/completions", json=chat_body(engine, option), timeout=120
        )
        assert response.status_code == 200, response.text
        replies[protect] = reply = response.json()
        assert reply["usage"]["prompt_tokens"] == len(ids)  # the markers never reach the model
        wait_for_idle(engine)
    protected, again = compactions(caplog, replies[None]["id"])
    assert [tuple(r) for r in protected.protected] == expected
    assert protected.after == "prefill" and protected.protected_kept
    assert protected.kept == max(int(len(ids) * 0.25), sum(b - a for a, b in expected))
    assert again.after == "decode" and again.protected_kept
    (unprotected,) = compactions(caplog, replies[False]["id"])
    assert unprotected.protected == () and unprotected.kept == int(len(ids) * 0.25)


def test_a_bad_marker_is_a_400_naming_messages(server_url: str, engine: Engine) -> None:
    body = chat_body(engine, {"method": "knorm"})
    body["messages"][1]["content"] = "unclosed <kv-protect>marker"
    response = httpx.post(f"{server_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages"
