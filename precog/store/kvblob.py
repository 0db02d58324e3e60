"""A prompt's KV cache as a self-describing, checksummed safetensors blob.

The store owns this format; the backend only builds and reads `KVBlob` objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT_VERSION = "1"


class CorruptBlobError(ValueError):
    """The bytes are not a valid KV blob, or their checksum does not match."""


@dataclass(slots=True)
class KVBlob:
    """Per-layer keys and values of one token sequence.

    keys[i], values[i]: [num_kv_heads, num_tokens, head_dim] for layer i (keys stored with RoPE applied
    at positions 0..num_tokens-1, as the model computed them). `rope` holds theta and scaling so a reader
    can re-rotate keys to other positions. `meta` carries anything else (compression method, ...).
    """

    model: str
    token_ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    rope: dict[str, float | str | None] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values) or not self.keys:
            raise ValueError("a KV blob needs the same, non-zero number of key and value layers")
        for k, v in zip(self.keys, self.values, strict=True):
            if k.dim() != 3 or k.shape[1] != len(self.token_ids) or v.shape[:2] != k.shape[:2]:
                raise ValueError(
                    f"layer tensors must be [kv_heads, {len(self.token_ids)}, head_dim]; "
                    f"got keys {tuple(k.shape)} values {tuple(v.shape)}"
                )

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def to_bytes(self) -> bytes:
        tensors = {f"k.{i}": k.contiguous() for i, k in enumerate(self.keys)}
        tensors |= {f"v.{i}": v.contiguous() for i, v in enumerate(self.values)}
        tensors["token_ids"] = torch.tensor(self.token_ids, dtype=torch.int64)
        header = {"model": self.model, "rope": self.rope, "meta": self.meta, "version": FORMAT_VERSION}
        return seal(tensors, header)

    @classmethod
    def from_bytes(cls, data: bytes) -> KVBlob:
        """Parse and verify; raises CorruptBlobError on any mismatch, never returns bad tensors."""
        tensors, header = unseal(data, "blob")
        try:
            n = sum(1 for name in tensors if name.startswith("k."))
            return cls(
                model=header["model"],
                token_ids=tensors["token_ids"].tolist(),
                keys=[tensors[f"k.{i}"] for i in range(n)],
                values=[tensors[f"v.{i}"] for i in range(n)],
                rope=header.get("rope", {}),
                meta=header.get("meta", {}),
            )
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise CorruptBlobError(f"blob does not parse: {exc}") from exc


def seal(tensors: dict[str, torch.Tensor], header: dict[str, Any], key: str = "precog") -> bytes:
    """The framing of every stored KV part: the SHA-256 of a safetensors body, then the body, which carries
    `header` as JSON in its metadata under `key`."""
    body = st_save(tensors, metadata={key: json.dumps(header, sort_keys=True)})
    return hashlib.sha256(body).digest() + body


def unseal(data: bytes, what: str, key: str = "precog") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and header of `seal`ed bytes; CorruptBlobError naming `what` when they are damaged."""
    if len(data) < 32:
        raise CorruptBlobError(f"{what} is shorter than its checksum")
    digest, body = data[:32], data[32:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptBlobError(f"{what} checksum mismatch")
    try:
        return st_load(body), json.loads(_metadata(body)[key])
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise CorruptBlobError(f"{what} does not parse: {exc}") from exc


def _metadata(body: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (8-byte little-endian length, then JSON)."""
    size = int.from_bytes(body[:8], "little")
    return dict(json.loads(body[8 : 8 + size]).get("__metadata__", {}))
