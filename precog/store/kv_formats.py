"""The names of the formats a store can keep KV blobs in (light: settings import it without torch)."""

from __future__ import annotations

from typing import Literal, get_args

KVFormat = Literal["float32", "float16", "bfloat16", "int8", "int4", "int2"]
KV_FORMATS: tuple[str, ...] = get_args(KVFormat)


def check_format(fmt: str) -> KVFormat:
    if fmt not in KV_FORMATS:
        raise ValueError(f"kv_format must be one of {', '.join(KV_FORMATS)}, got {fmt!r}")
    return fmt  # type: ignore[return-value]
