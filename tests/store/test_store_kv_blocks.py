"""KV blobs kept as content-addressed blocks in a chosen format: shared prefixes stored once, space given
back when the last entry that names a block goes, older blobs still readable."""

from __future__ import annotations

from pathlib import Path

import pytest
import rocksdict
import torch

from precog.store import KV_FORMATS, KVBlob, Store
from precog.store.db import COLUMN_FAMILIES
from precog.store.kv_blocks import BLOCK_TOKENS

HEADS, DIM, LAYERS = 3, 64, 2


def kv_of(token_ids: list[int]) -> KVBlob:
    """KV that is a function of the tokens, position by position (as a model's KV of a prefix is)."""
    rows = [torch.Generator().manual_seed(t * 7919 + p) for p, t in enumerate(token_ids)]

    def layer(salt: int) -> torch.Tensor:
        return torch.stack([torch.randn(HEADS, DIM, generator=g) + salt for g in rows], dim=1)

    return KVBlob(
        model="m",
        token_ids=list(token_ids),
        keys=[layer(i) for i in range(LAYERS)],
        values=[layer(10 + i) for i in range(LAYERS)],
    )


def max_error(a: KVBlob, b: KVBlob) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.keys + a.values, b.keys + b.values, strict=True))


# Bound on |error| for N(0, 1)-ish data: half a quantisation step of a group spanning ~8 standard deviations.
BOUNDS = {"float32": 0.0, "float16": 5e-3, "bfloat16": 4e-2, "int8": 0.04, "int4": 0.6, "int2": 3.0}


@pytest.mark.parametrize("fmt", KV_FORMATS)
def test_every_format_round_trips_within_its_bound(tmp_path: Path, make_entry, fmt: str) -> None:
    blob = kv_of(list(range(BLOCK_TOKENS * 2 + 5)))  # two full blocks and a short one
    with Store.open(tmp_path / fmt, progress=False, kv_format=fmt) as store:
        entry = make_entry()
        store.put(entry, blob)
        back = store.get_blob(entry.kv_blob_id)
        assert back.token_ids == blob.token_ids and back.model == "m"
        assert [tuple(k.shape) for k in back.keys] == [tuple(k.shape) for k in blob.keys]
        assert max_error(blob, back) <= BOUNDS[fmt]
        assert store.verify().ok


def test_smaller_formats_hold_fewer_bytes(tmp_path: Path, make_entry) -> None:
    held = {}
    for fmt in KV_FORMATS:
        with Store.open(tmp_path / fmt, progress=False, kv_format=fmt) as store:
            store.put(make_entry(), kv_of(list(range(200))))
            held[fmt] = store.stats()["bytes"]["blobs"]
    raw = 200 * HEADS * DIM * LAYERS * 2 * 4
    assert raw < held["float32"] < raw * 1.02
    assert held["float16"] == pytest.approx(held["bfloat16"], rel=0.01)
    assert held["float32"] > held["float16"] > held["int8"] > held["int4"] > held["int2"]
    assert held["int4"] < raw / 5


def test_a_shared_prefix_is_stored_once_and_freed_with_its_last_entry(tmp_path: Path, make_entry) -> None:
    prefix = list(range(1000, 1000 + 2 * BLOCK_TOKENS))
    blobs = [kv_of(prefix + list(range(n * 100, n * 100 + 40))) for n in range(10)]
    with Store.open(tmp_path / "s", progress=False, kv_format="int8") as store:
        entries = [make_entry() for _ in blobs]
        store.put_many(entries, blobs)
        stats = store.stats()
        assert stats["blobs"] == 10
        # Each blob has 104 tokens = 4 blocks; the first two are the shared prefix's.
        assert stats["kv_blocks"] == 2 + 10 * 2
        with Store.open(tmp_path / "alone", progress=False, kv_format="int8") as alone:
            alone.put(make_entry(), blobs[0])
            one = alone.stats()["bytes"]["blobs"]
        assert stats["bytes"]["blobs"] < 10 * one * 0.6

        for entry in entries[:9]:
            assert store.delete(entry.id)
        assert store.stats()["kv_blocks"] == 4
        assert max_error(blobs[9], store.get_blob(entries[9].kv_blob_id)) < BOUNDS["int8"]
        assert store.invalidate(scope=entries[9].scope) == 1
        after = store.stats()
        assert (after["blobs"], after["kv_blocks"], after["bytes"]["blobs"]) == (0, 0, 0)
        assert store.verify().ok


def test_replacing_an_entry_frees_the_blocks_only_its_old_blob_held(tmp_path: Path, make_entry) -> None:
    with Store.open(tmp_path / "s", progress=False, kv_format="int4") as store:
        first = make_entry(query="same question")
        store.put(first, kv_of(list(range(3 * BLOCK_TOKENS))))
        second = make_entry(query="same question")
        store.put(second, kv_of(list(range(BLOCK_TOKENS)) + list(range(500, 500 + BLOCK_TOKENS))))
        assert store.get(first.id) is None
        assert store.stats()["kv_blocks"] == 2  # the shared first block, and the new second one
        assert store.get_blob(second.kv_blob_id).token_ids[BLOCK_TOKENS] == 500


def test_standalone_blobs_share_blocks_and_delete_by_id(store: Store) -> None:
    a = store.put_blob(kv_of(list(range(2 * BLOCK_TOKENS))))
    b = store.put_blob(kv_of(list(range(2 * BLOCK_TOKENS))))
    assert store.stats()["kv_blocks"] == 2
    assert store.delete_blob(a) and store.stats()["kv_blocks"] == 2
    assert store.get_blob(b).token_ids == list(range(2 * BLOCK_TOKENS))
    assert store.delete_blob(b) and store.stats()["kv_blocks"] == 0
    assert not store.delete_blob(b)


def _raw_blobs(path: Path) -> tuple[rocksdict.Rdict, rocksdict.Rdict]:
    db = rocksdict.Rdict(
        str(path / "db"),
        options=rocksdict.Options(raw_mode=True),
        column_families={name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES},
    )
    return db, db.get_column_family("blobs")


def test_compact_recounts_references_and_frees_leaked_blocks(tmp_path: Path, make_entry) -> None:
    path = tmp_path / "s"
    with Store.open(path, progress=False) as store:
        kept, gone = make_entry(), make_entry()
        store.put_many([kept, gone], [kv_of(list(range(40))), kv_of(list(range(900, 940)))])
    db, blobs = _raw_blobs(path)
    refs = [key for key in blobs.keys() if key.startswith(b"ref/")]  # noqa: SIM118 (an Rdict)
    for key in refs:  # a count too high (a block would leak) and one too low (it would be freed early)
        blobs[key] = (5 if key == refs[0] else 0).to_bytes(8, "big")
    del blobs
    db.close()
    with Store.open(path, progress=False) as store:
        assert store.compact() == {"expired_entries": 0, "orphan_blobs": 0, "freed_blocks": 0}
        store.delete(gone.id)
        assert store.stats()["kv_blocks"] == 2
        assert store.get_blob(kept.kv_blob_id).token_ids == list(range(40))
        assert store.verify().ok


def test_format_1_blobs_still_load_beside_new_ones(tmp_path: Path, make_entry) -> None:
    path = tmp_path / "s"
    old = kv_of(list(range(20)))
    with Store.open(path, progress=False):
        pass
    db, blobs = _raw_blobs(path)
    blobs[b"0123456789abcdef0123456789abcdef"] = b"S" + old.to_bytes()
    del blobs
    db.close()
    with Store.open(path, progress=False, kv_format="int8") as store:
        assert max_error(old, store.get_blob("0123456789abcdef0123456789abcdef")) == 0.0
        new = store.put_blob(kv_of(list(range(20))))
        assert max_error(old, store.get_blob(new)) <= BOUNDS["int8"]
        assert store.verify().ok and store.stats()["blobs"] == 2


def test_an_unknown_format_or_unquantisable_shape_is_refused(tmp_path: Path, make_entry) -> None:
    with pytest.raises(ValueError, match="kv_format must be one of"):
        Store.open(tmp_path / "s", progress=False, kv_format="int3")
    with Store.open(tmp_path / "s", progress=False, kv_format="int4") as store:
        odd = KVBlob(model="m", token_ids=[1, 2], keys=[torch.ones(1, 2, 3)], values=[torch.ones(1, 2, 3)])
        with pytest.raises(ValueError, match="head_dim 3"):
            store.put(make_entry(), odd)
        assert store.stats()["entries"] == 0
