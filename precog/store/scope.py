"""The scope key: a stored answer is valid only for the same model, system prompt, tenant, earlier turns."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


def normalise_text(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for exact matching and scope hashing."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str


def scope_key(model: str, system_prompt: str, tenant: str, earlier_turns: Sequence[Turn] = ()) -> str:
    """Hex digest over everything that must match for a stored answer to be valid.

    The last user question is *not* part of the scope: it is what is searched inside the scope.
    """
    payload = {
        "model": model,
        "system": normalise_text(system_prompt),
        "tenant": tenant,
        "turns": [[t.role, normalise_text(t.content)] for t in earlier_turns],
    }
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=16).hexdigest()
