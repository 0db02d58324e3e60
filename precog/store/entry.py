"""The stored unit: one question, its answer and everything needed to serve it safely."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Source(StrEnum):
    PRECOMPUTED = "precomputed"
    WRITE_BACK = "write-back"


@dataclass(slots=True)
class Entry:
    """A question/answer pair inside one scope.

    `embedding` is a float32 vector of the store's embedding dimension, L2-normalised on insert.
    `expires` is an epoch time or None (never). `meta` carries provenance (chunk id, request id).
    `completion_tokens` is the answer's length in the model's tokens, so that the gateway serves it only
    to requests whose max_tokens it fits; None: unknown (the gateway estimates it).
    """

    scope: str
    query: str
    answer: str
    embedding: np.ndarray
    model: str
    source: Source = Source.PRECOMPUTED
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    expires: float | None = None
    hits: int = 0
    kv_blob_id: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    completion_tokens: int | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now if now is not None else time.time()) >= self.expires
