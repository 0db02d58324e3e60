"""A small client for any OpenAI-compatible server, plus precog's KV export endpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

UNSUPPORTED_STATUS = frozenset({404, 405, 501})


class UpstreamUnavailable(RuntimeError):
    """The server cannot be reached, or keeps failing (5xx, timeouts) after retries."""


class UpstreamGarbage(RuntimeError):
    """The server answered, but not with the shape the OpenAI API promises."""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"

    @property
    def truncated(self) -> bool:
        """Cut off by max_tokens: a partial answer, which must not be served as if it were whole."""
        return self.finish_reason == "length"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Upstream:
    """Blocking and thread-safe (one pooled httpx.Client), so worker threads and Ray tasks share the code."""

    def __init__(
        self, url: str, model: str | None, timeout: float, retries: int = 2, api_key: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.retries = retries
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST with retries on connection errors, timeouts and 5xx; other statuses go to the caller."""
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._http.post(path, json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            time.sleep(0.5 * 2**attempt)
        raise UpstreamUnavailable(f"{self.url}{path} failed after {self.retries + 1} attempts ({last})")

    def served_models(self) -> list[str]:
        """The ids in /v1/models; fails fast, before anything is written, when the server is not there."""
        try:
            response = self._http.get("/v1/models", timeout=10.0)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"{self.url}/v1/models answered HTTP {response.status_code}")
        try:
            return [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamGarbage(
                f"{self.url}/v1/models is not an OpenAI model list: {response.text[:200]!r}"
            ) from exc

    def chat(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int
    ) -> Completion:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "stream": False,
        }
        response = self._post("/v1/chat/completions", body)
        if response.status_code != 200:
            raise UpstreamGarbage(
                f"chat completion answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"]
            usage = payload.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            return Completion(
                text,
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
                str(choice.get("finish_reason") or "stop"),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamGarbage(f"chat completion is not OpenAI-shaped: {response.text[:200]!r}") from exc

    def export_kv(self, messages: list[dict[str, str]]) -> bytes | None:
        """The KV blob bytes of the chat-templated `messages`, or None where the server has no KV export."""
        body = {"model": self.model, "messages": messages, "add_generation_prompt": False}
        response = self._post("/v1/kv/export", body)
        if response.status_code in UNSUPPORTED_STATUS:
            return None
        if response.status_code != 200 or not response.content:
            raise UpstreamGarbage(f"KV export answered HTTP {response.status_code}: {response.text[:200]}")
        return response.content
