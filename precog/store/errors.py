"""Errors the store raises; each message says what is wrong and what to do about it."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store failure that is not a plain bad argument (those raise ValueError)."""


class NotAStoreError(StoreError):
    """The path exists but does not hold a precog store."""


class EmbeddingMismatchError(StoreError):
    """The store was built with another embedding model or dimension than the one asked for."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted on a store opened with read_only=True."""


class StoreWriteError(StoreError):
    """RocksDB refused a write (full disk, I/O error); nothing of that write was stored."""


class StoreReadError(StoreError):
    """RocksDB could not read stored bytes back (a block checksum mismatch, an I/O error)."""
