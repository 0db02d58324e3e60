"""A prompt's KV cache as a self-describing, checksummed safetensors blob.

The store owns this format; the backend only builds and reads `KVBlob` objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

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
        body = st_save(tensors, metadata={"precog": json.dumps(header, sort_keys=True)})
        return hashlib.sha256(body).digest() + body

    @classmethod
    def from_bytes(cls, data: bytes) -> KVBlob:
        """Parse and verify; raises CorruptBlobError on any mismatch, never returns bad tensors."""
        if len(data) < 32:
            raise CorruptBlobError("blob is shorter than its checksum")
        digest, body = data[:32], data[32:]
        if hashlib.sha256(body).digest() != digest:
            raise CorruptBlobError("blob checksum mismatch")
        try:
            tensors = st_load(body)

            header = json.loads(_metadata(body)["precog"])
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


def _metadata(body: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (8-byte little-endian length, then JSON)."""
    size = int.from_bytes(body[:8], "little")
    return dict(json.loads(body[8 : 8 + size]).get("__metadata__", {}))
