"""Damaged bytes are reported by verify and raise on read; they are never returned as data."""

from __future__ import annotations

from pathlib import Path

import pytest
import rocksdict
import torch

from precog.store import CorruptBlobError, CorruptRecordError, KVBlob, Store
from precog.store.db import COLUMN_FAMILIES
from precog.store.kv_blocks import Manifest


def _blob(tokens: int = 64, first: int = 0) -> KVBlob:
    """Random KV for tokens first..first+tokens-1 (blobs of the same tokens share their stored blocks)."""
    return KVBlob(
        model="m",
        token_ids=list(range(first, first + tokens)),
        keys=[torch.randn(4, tokens, 32) for _ in range(2)],
        values=[torch.randn(4, tokens, 32) for _ in range(2)],
    )


def _flip_value_byte(path: Path, family: str, key: str, offset: int) -> None:
    """Damage one stored value in place, bypassing the store (as bit rot before a write would)."""
    options = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(
        str(path / "db"),
        options=options,
        column_families={name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES},
    )
    column = db.get_column_family(family)
    value = bytearray(column[key.encode()])
    value[offset] ^= 0x55
    column[key.encode()] = bytes(value)
    del column
    db.close()


def _first_block_key(path: Path, blob_id: str) -> str:
    with Store.open(path, progress=False, read_only=True) as store:
        manifest = store._db.cf["blobs"].get(blob_id.encode())
    return "blk/" + Manifest.from_bytes(manifest[1:]).blocks[0].decode()


@pytest.mark.parametrize("part", ["manifest", "block"])
def test_corrupt_blob_value_is_reported_and_never_returned(store_path, make_entry, part: str) -> None:
    entry, healthy = make_entry(), make_entry()
    with Store.open(store_path, progress=False) as store:
        store.put(entry, _blob(first=1000))
        store.put(healthy, _blob())
    if part == "manifest":
        _flip_value_byte(store_path, "blobs", entry.kv_blob_id, offset=100)
        expected = ("corrupt-blob", entry.kv_blob_id)
    else:
        block = _first_block_key(store_path, entry.kv_blob_id)
        _flip_value_byte(store_path, "blobs", block, offset=5000)
        expected = ("corrupt-kv-block", block)
    with Store.open(store_path, progress=False) as store:
        with pytest.raises(CorruptBlobError, match="checksum"):
            store.get_blob(entry.kv_blob_id)
        assert store.get_blob(healthy.kv_blob_id).token_ids == list(range(64))
        assert store.get(entry.id).id == entry.id
        report = store.verify()
        assert not report.ok
        assert [(p.kind, p.key) for p in report.problems] == [expected]


def test_corrupt_sst_file_is_reported_and_read_raises(store_path, make_entry) -> None:
    entry = make_entry()
    with Store.open(store_path, progress=False) as store:
        store.put(entry, _blob(tokens=2048))
        store.compact()
    sst = max((store_path / "db").glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(sst.read_bytes())
    data[len(data) // 3] ^= 0xFF
    sst.write_bytes(bytes(data))
    with Store.open(store_path, progress=False) as store:
        with pytest.raises(CorruptBlobError, match="cannot be read"):
            store.get_blob(entry.kv_blob_id)
        report = store.verify()
        assert not report.ok and any(p.kind == "unreadable" and p.key == "blobs" for p in report.problems)


def test_corrupt_entry_record_is_skipped_by_search_and_reported(store_path, make_entry) -> None:
    bad, good = make_entry(), make_entry()
    with Store.open(store_path, progress=False) as store:
        store.put_many([bad, good])
    _flip_value_byte(store_path, "entries", bad.id, offset=40)
    with Store.open(store_path, progress=False) as store:
        with pytest.raises(CorruptRecordError):
            store.get(bad.id)
        assert [e.id for e, _ in store.search("scope-a", bad.embedding, k=5)] == [good.id]
        kinds = {p.kind for p in store.verify().problems}
        assert "corrupt-record" in kinds
        assert store.delete(bad.id) is True
        report = store.verify()
        assert report.ok, report.summary()


def test_orphan_entry_blob_is_a_warning_and_compact_removes_it(store_path, make_entry) -> None:
    """A blob tagged as an entry's with no entry referring to it (e.g. left by a bug or a partial
    restore) wastes space but damages nothing: verify warns, compact() drops it."""
    with Store.open(store_path, progress=False) as store:
        store.put(make_entry(), _blob())
    options = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(
        str(store_path / "db"),
        options=options,
        column_families={name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES},
    )
    blobs = db.get_column_family("blobs")
    blobs[b"orphan-blob"] = b"E" + _blob(tokens=8).to_bytes()
    del blobs
    db.close()
    with Store.open(store_path, progress=False) as store:
        report = store.verify()
        assert report.ok and [(p.kind, p.severity) for p in report.problems] == [("orphan-blob", "warning")]
        assert store.compact() == {"expired_entries": 0, "orphan_blobs": 1, "freed_blocks": 0}
        assert store.verify().problems == [] and store.stats()["blobs"] == 1
