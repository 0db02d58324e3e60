"""Where a request's imported KV prefix (or semantic-reuse reference) comes from: inline blob bytes, or
a blob id in the store.

Every way a blob can be unusable (bad base64, damaged bytes, unknown id, no store configured) is the
caller's error and answers 400; nothing is passed to the engine unverified. A blob whose tokens only
partly match the prompt is cut to the matching prefix: that part skips prefill, the rest is computed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from pathlib import Path

from precog.backend.server.errors import APIError, bad_request
from precog.store import CorruptBlobError, KVBlob, Store, StoreError

log = logging.getLogger(__name__)
REOPEN_INTERVAL_S = 1.0  # unknown ids must not make every request reopen the store


class KVSource:
    """Resolves `kv_blob` / `kv_blob_id` (or `kv_reuse_blob` / `kv_reuse_blob_id`) to a verified blob;
    whether it fits the model is the engine's check.

    The store is opened read-only, so it sees blobs as of opening; a lookup that misses reopens it (at
    most once a second), so blobs written by the precompute pipeline after the server started are found.
    """

    def __init__(self, store_path: Path | None) -> None:
        self._store_path = store_path
        self._store: Store | None = None
        self._opened_at = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def resolve(self, kv_blob: str | None, kv_blob_id: str | None, prefix: str = "kv_blob") -> KVBlob | None:
        """The blob given inline or by id; `prefix` names the fields in errors (kv_blob, kv_reuse_blob)."""
        if kv_blob is not None and kv_blob_id is not None:
            raise bad_request(f"Give {prefix} or {prefix}_id, not both.", param=f"{prefix}_id")
        if kv_blob is not None:
            return self._parse(kv_blob, prefix)
        if kv_blob_id is not None:
            return self._lookup(kv_blob_id, f"{prefix}_id")
        return None

    @staticmethod
    def _parse(encoded: str, param: str) -> KVBlob:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(f"{param} is not valid base64.", param=param, code="invalid_kv_blob") from exc
        try:
            return KVBlob.from_bytes(data)
        except (CorruptBlobError, ValueError) as exc:
            raise bad_request(
                f"The KV blob is not valid: {exc}", param=param, code="invalid_kv_blob"
            ) from exc

    def _lookup(self, blob_id: str, param: str) -> KVBlob:
        path = self._store_path
        if path is None:
            raise bad_request(
                "This server has no store configured (PRECOG_BACKEND_STORE_PATH); send the blob inline.",
                param=param,
            )
        with self._lock:
            fresh = self._store is None
            blob = self._get(self._store or self._reopen(path), blob_id, param)
            if blob is None and not fresh and time.monotonic() - self._opened_at >= REOPEN_INTERVAL_S:
                blob = self._get(self._reopen(path), blob_id, param)
        if blob is None:
            raise bad_request(
                f"No KV blob with id `{blob_id}` in the store.", param=param, code="kv_blob_not_found"
            )
        return blob

    @staticmethod
    def _get(store: Store, blob_id: str, param: str) -> KVBlob | None:
        try:
            return store.get_blob(blob_id)
        except KeyError:
            return None
        except CorruptBlobError as exc:
            raise bad_request(
                f"KV blob {blob_id} is damaged: {exc}", param=param, code="invalid_kv_blob"
            ) from exc

    def _reopen(self, path: Path) -> Store:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._opened_at = time.monotonic()
        try:
            self._store = Store.open(path, read_only=True, create=False, progress=False)
        except (StoreError, OSError) as exc:
            log.error("cannot open the KV store", extra={"path": str(path), "error": str(exc)})
            raise APIError(503, f"The KV store is unavailable: {exc}", type="server_error") from exc
        return self._store


def matching_prefix(blob: KVBlob, prompt_token_ids: list[int]) -> KVBlob:
    """The blob cut to the longest prefix its tokens share with the prompt (possibly none)."""
    shared = 0
    for ours, theirs in zip(blob.token_ids, prompt_token_ids, strict=False):
        if ours != theirs:
            break
        shared += 1
    if shared == len(blob.token_ids):
        return blob
    return KVBlob(
        model=blob.model,
        token_ids=blob.token_ids[:shared],
        keys=[k[:, :shared] for k in blob.keys],
        values=[v[:, :shared] for v in blob.values],
        rope=blob.rope,
        meta=blob.meta,
    )
