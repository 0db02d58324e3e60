"""Export to a directory or tarball and import back: the same entries, vectors and blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precog.store import KVBlob, NotAStoreError, Store, StoreError


@pytest.mark.parametrize("target", ["export-dir", "export.tar.gz"])
def test_export_import_round_trip(store: Store, make_entry, tmp_path, target) -> None:
    blob = KVBlob(model="m", token_ids=[1, 2, 3], keys=[torch.ones(1, 3, 2)], values=[torch.zeros(1, 3, 2)])
    entries = [make_entry(scope=f"s{i % 2}") for i in range(25)]
    store.put_many(entries)
    store.put(entries[0], blob)
    store.record_hit(entries[1].id)
    exported = store.export(tmp_path / target)
    store.put(make_entry())  # later writes do not leak into the export

    report = Store.import_(exported, tmp_path / "imported")
    assert report.ok and report.entries == 25 and report.blobs == 1
    with Store.open(tmp_path / "imported", create=False, progress=False) as copy:
        assert len(copy) == 25
        for entry in entries:
            twin = copy.get(entry.id)
            assert twin is not None and (twin.query, twin.answer, twin.scope) == (
                entry.query,
                entry.answer,
                entry.scope,
            )
            np.testing.assert_array_equal(twin.embedding, store.get(entry.id).embedding)
            assert copy.search(entry.scope, entry.embedding, k=1)[0][0].id == entry.id
        assert copy.get(entries[1].id).hits == 1
        assert torch.equal(copy.get_blob(entries[0].kv_blob_id).keys[0], blob.keys[0])


def test_export_and_import_refuse_to_overwrite(store: Store, make_entry, tmp_path) -> None:
    store.put(make_entry())
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(StoreError, match="not an empty directory"):
        store.export(tmp_path / "busy")
    exported = store.export(tmp_path / "ok")
    with pytest.raises(StoreError, match="not an empty directory"):
        Store.import_(exported, tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"


def test_import_rejects_what_is_not_an_export(tmp_path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAStoreError):
        Store.import_(tmp_path / "plain", tmp_path / "dest")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(StoreError, match="not a readable"):
        Store.import_(tmp_path / "junk.tar.gz", tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())
