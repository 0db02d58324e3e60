"""The KV cost policy keeps a stored blob only where reading it back beats prefilling its tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from precog.precompute import run_precompute
from precog.precompute.kv_cost import prefill_tokens_per_s, recompute_is_faster
from precog.precompute.records import KVCaptured
from precog.store import Entry, KVBlob, Store
from tests.precompute.conftest import make_settings
from tests.precompute.fake_upstream import FakeUpstream


def test_prefill_throughput_counts_only_timed_exports() -> None:
    captured = [
        KVCaptured("a", 10, kv_tokens=100, seconds=0.5),
        KVCaptured("b", 10, kv_tokens=300, seconds=1.5),
    ]
    assert prefill_tokens_per_s(captured) == 200.0
    assert prefill_tokens_per_s([KVCaptured("c", 10, kv_tokens=50)]) is None


def test_the_blob_goes_only_when_prefill_is_faster_than_its_measured_load(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", progress=False, dim=4, embedding_model="m") as store:
        blob = KVBlob("m", list(range(64)), [torch.randn(2, 64, 32)] * 2, [torch.randn(2, 64, 32)] * 2)
        entry = Entry(scope="s", query="q", answer="a", embedding=np.ones(4, np.float32), model="m")
        store.put(entry, blob)
        assert entry.kv_blob_id is not None
        assert recompute_is_faster(store, entry.kv_blob_id, 64, tokens_per_s=1.0) is None
        reason = recompute_is_faster(store, entry.kv_blob_id, 64, tokens_per_s=1e12)
        assert reason is not None and reason.startswith("prefill of 64 tokens")
        assert recompute_is_faster(store, entry.kv_blob_id, 64, tokens_per_s=None) is None


def test_under_the_cost_policy_every_entry_is_written_with_or_without_its_kv(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    report, _ = run_precompute(
        make_settings(fake.url, kv_policy="cost"), corpus, tmp_path / "s", progress=False
    )
    assert report["kv_blobs"] == report["entries_written"] > 0
    assert report["entries_with_kv"] + report["kv_not_kept_prefill_faster"] == report["kv_blobs"]
    with Store.open(tmp_path / "s", read_only=True, progress=False) as store:
        entries = store.entries(limit=1000)
        assert len(entries) == report["entries_written"]
        with_kv = [e for e in entries if e.kv_blob_id]
        assert len(with_kv) == report["entries_with_kv"]
        assert all(store.get_blob(e.kv_blob_id).token_ids for e in with_kv)
        assert store.verify().ok
