"""A stored KV blob: a manifest naming content-addressed blocks of `BLOCK_TOKENS` tokens each.

A block's key is the hash of the model, the format and every token up to the block's end (the prefix
it was computed from, as vLLM's prefix cache and LMCache's chunks address KV), so a system prompt or
template that thousands of entries start with is stored once. The manifest (format version 2) holds the
token ids, model, RoPE settings and meta; blobs of format version 1 (one safetensors body with every
layer, `KVBlob.to_bytes`) still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from precog.store.kv_codec import decode_block, encode_block
from precog.store.kv_formats import KVFormat, check_format
from precog.store.kvblob import CorruptBlobError, KVBlob, seal, unseal

BLOCK_TOKENS = 32
MANIFEST_VERSION = "2"
_MAGIC = b"precog-kv/2\n"


@dataclass(frozen=True, slots=True)
class Manifest:
    model: str
    token_ids: list[int]
    fmt: KVFormat
    blocks: list[bytes]
    num_layers: int
    kv_heads: int
    rope: dict[str, float | str | None] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        header = {
            "model": self.model,
            "format": self.fmt,
            "blocks": [b.decode() for b in self.blocks],
            "num_layers": self.num_layers,
            "kv_heads": self.kv_heads,
            "rope": self.rope,
            "meta": self.meta,
            "version": MANIFEST_VERSION,
        }
        return _MAGIC + seal({"token_ids": torch.tensor(self.token_ids, dtype=torch.int64)}, header)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        tensors, header = unseal(data[len(_MAGIC) :], "blob manifest")
        try:
            return cls(
                model=header["model"],
                token_ids=tensors["token_ids"].tolist(),
                fmt=check_format(header["format"]),
                blocks=[b.encode() for b in header["blocks"]],
                num_layers=int(header["num_layers"]),
                kv_heads=int(header["kv_heads"]),
                rope=header.get("rope", {}),
                meta=header.get("meta", {}),
            )
        except (KeyError, ValueError) as exc:
            raise CorruptBlobError(f"blob manifest does not parse: {exc}") from exc


def is_manifest(data: bytes) -> bool:
    return data.startswith(_MAGIC)


def block_keys(model: str, fmt: KVFormat, token_ids: list[int], extra: str = "") -> list[bytes]:
    """One key per block (hex): a running hash over the model, the format, `extra` (what else shapes the
    KV: RoPE settings, meta) and the tokens so far."""
    running = hashlib.sha256(f"{model}\0{fmt}\0{extra}\0".encode())
    keys = []
    for start in range(0, len(token_ids), BLOCK_TOKENS):
        running.update(np.asarray(token_ids[start : start + BLOCK_TOKENS], dtype=np.int64).tobytes())
        keys.append(running.copy().hexdigest()[:40].encode())
    return keys


@dataclass(frozen=True, slots=True)
class EncodedBlob:
    """A blob ready to write: its manifest's bytes and (key, bytes) of each of its blocks."""

    manifest: bytes
    blocks: list[tuple[bytes, bytes]]


def encode_blob(blob: KVBlob, fmt: KVFormat) -> EncodedBlob:
    """Split `blob` into blocks in `fmt` (ValueError when its tensors cannot be kept in that format)."""
    if not blob.token_ids:
        raise ValueError("a KV blob to store needs at least one token")
    extra = json.dumps({"rope": blob.rope, "meta": blob.meta}, sort_keys=True)
    keys = block_keys(blob.model, fmt, blob.token_ids, extra)
    blocks = []
    for number, key in enumerate(keys):
        span = slice(number * BLOCK_TOKENS, (number + 1) * BLOCK_TOKENS)
        layer_keys = [k[:, span] for k in blob.keys]
        layer_values = [v[:, span] for v in blob.values]
        blocks.append((key, encode_block(layer_keys, layer_values, fmt)))
    manifest = Manifest(
        model=blob.model,
        token_ids=list(blob.token_ids),
        fmt=fmt,
        blocks=keys,
        num_layers=blob.num_layers,
        kv_heads=int(blob.keys[0].shape[0]),
        rope=dict(blob.rope),
        meta=dict(blob.meta),
    )
    return EncodedBlob(manifest.to_bytes(), blocks)


def decode_blob(manifest: Manifest, blocks: list[bytes | None]) -> KVBlob:
    """The blob back from its manifest and its blocks' bytes (None: a block is missing)."""
    if any(data is None for data in blocks):
        raise CorruptBlobError("a KV block the blob names is missing")
    parts = [decode_block(data, manifest.num_layers, manifest.kv_heads) for data in blocks if data]
    keys = [torch.cat([p[0][i] for p in parts], dim=1) for i in range(manifest.num_layers)]
    values = [torch.cat([p[1][i] for p in parts], dim=1) for i in range(manifest.num_layers)]
    try:
        return KVBlob(manifest.model, manifest.token_ids, keys, values, manifest.rope, manifest.meta)
    except ValueError as exc:
        raise CorruptBlobError(f"the blob's blocks do not fit its tokens: {exc}") from exc
