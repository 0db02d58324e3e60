"""Declared variable parts of system prompts, so that a chat app whose prompt carries a date, the user's
name or a session id still shares one scope across its users.

The scope is the exact system prompt (with model, tenant and earlier turns): an app that writes "Today is
2026-12-07. The user is Ana." into it would never hit. A scope template names a part that does NOT change
the answer, as a regular expression; before the scope is computed each match is replaced by the template's
placeholder, so "Today is 2026-12-07." and "Today is 2026-12-08." are one scope, "Today is {date}." (the
prompt sent upstream is never changed). A part that can change the answer (a plan tier, a locale, the
user's permissions) must not be templated: it stays in the scope, and so do answers that depend on it.
Precompute for such an app with the templated prompt as its `system_prompt`.

An app can also name its scope itself, per request (`x-precog-scope: support-bot-v3`): the system prompt
then leaves the scope (model, tenant and earlier turns stay), which is the app's declaration that its
answers do not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field, field_validator

from precog.gateway.errors import GatewayError

SCOPE_HEADER = "x-precog-scope"
_SCOPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


class ScopeTemplate(BaseModel):
    pattern: str = Field(
        description="A regular expression for a part of the system prompt that the answer does not depend on."
    )
    placeholder: str = Field(default="{var}", description="What each match becomes in the scope.")
    tenants: list[str] = Field(
        default_factory=list, description="Tenants it applies to; empty: every tenant."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"scope template pattern {pattern!r} is not a regular expression: {exc}"
            ) from exc
        if compiled.match(""):
            raise ValueError(f"scope template pattern {pattern!r} matches the empty string")
        return pattern

    def applies_to(self, tenant: str) -> bool:
        return not self.tenants or tenant in self.tenants


def templated_prompt(system_prompt: str, tenant: str, templates: Sequence[ScopeTemplate]) -> str:
    """`system_prompt` as the scope sees it: every declared variable part replaced by its placeholder."""
    for template in templates:
        if template.applies_to(tenant):
            system_prompt = re.sub(template.pattern, template.placeholder, system_prompt)
    return system_prompt


def named_scope(value: str | None) -> str | None:
    """The scope a request names in `x-precog-scope` (None when it names none); 400 when it is not a
    name (letters, digits and ._:/- up to 128)."""
    if value is None:
        return None
    if not _SCOPE_NAME.fullmatch(value):
        raise GatewayError(
            400,
            f"{SCOPE_HEADER} must be a name of letters, digits and ._:/- (up to 128), not {value!r}",
            code="invalid_scope",
            param=SCOPE_HEADER,
        )
    return value
