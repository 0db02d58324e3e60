"""The local engine end to end against a deterministic upstream over HTTP, into a real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from precog.precompute import PrecomputeError, run_precompute
from precog.precompute.tokens import SimpleTokenizer
from precog.store import Embedder, KVBlob, Source, Store, scope_key
from tests.precompute.conftest import DOCS, make_settings
from tests.precompute.fake_upstream import MODEL, FakeUpstream

SYSTEM = "You answer questions about geography."


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def _entries(store_path: Path) -> list:
    store = Store.open(store_path, read_only=True, progress=False)
    try:
        return list(store.entries())
    finally:
        store.close()


def test_builds_entries_the_gateway_finds_in_its_scope(
    fake: FakeUpstream, corpus: Path, tmp_path: Path, embedder: Embedder
) -> None:
    store_path = tmp_path / "store"
    report, report_path = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert report_path.is_file()
    assert report["complete"] and not report["failed"]
    assert report["chunks"] == report["chunks_done"] >= 2
    assert (
        report["entries_written"] == report["answers"] == report["queries_accepted"] == report["kv_blobs"] > 0
    )
    assert report["duplicates_dropped"] > 0, (
        "the fake's near-duplicates must be caught by the embedding check"
    )
    assert report["tokens_spent"] == report["tokens_spent_this_run"] > 0
    assert report["kv_bytes_captured"] > report["kv_bytes_stored"] > 0
    assert report["entries_with_kv"] + report["kv_not_kept_prefill_faster"] == report["kv_blobs"]
    assert report["bytes_per_entry_with_kv"] > report["bytes_per_entry_without_kv"] > 0

    scope = scope_key(MODEL, SYSTEM, "acme")
    store = Store.open(store_path, read_only=True, progress=False)
    try:
        entries = list(store.entries())
        assert len(entries) == report["entries_written"]
        queries = [e.query for e in entries]
        assert len(set(queries)) == len(queries)
        for entry in entries:
            assert entry.scope == scope and entry.source == Source.PRECOMPUTED and entry.model == MODEL
            assert entry.answer.startswith("According to the document")
            assert entry.expires is not None and entry.kv_blob_id is not None
            assert isinstance(store.get_blob(entry.kv_blob_id), KVBlob)
            assert entry.meta["file"] in ("rivers.txt", "volcanoes.md")
            assert entry.completion_tokens is not None and entry.completion_tokens > 0
        probe = entries[0].query
        hits = store.search(scope, embedder.encode([probe])[0], 1)
        assert hits[0][0].query == probe and hits[0][1] > 0.99
        other_scope = scope_key(MODEL, SYSTEM, "another-tenant")
        assert store.search(other_scope, embedder.encode([probe])[0], 1) == []
    finally:
        store.close()
    vectors = embedder.encode(queries)
    similarity = vectors @ vectors.T - np.eye(len(queries))
    assert similarity.max() < 0.99


def test_rerun_is_a_no_op(fake: FakeUpstream, corpus: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    first, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    fake.behaviour.requests.clear()
    second, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert fake.behaviour.requests == []
    assert second["tokens_spent_this_run"] == 0
    assert second["entries_written"] == first["entries_written"] == len(_entries(store_path))


def test_new_documents_extend_the_store_without_repeating_stored_questions(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "store"
    first, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    (corpus / "copy.txt").write_text(
        (corpus / "rivers.txt").read_text() + " A new closing sentence about barges here."
    )
    second, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert second["chunks"] > first["chunks"]
    entries = _entries(store_path)
    assert len(entries) == second["entries_written"]
    assert len({e.query for e in entries}) == len(entries)


def test_backend_without_kv_export_stores_entries_without_blobs(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    fake.behaviour.kv = False
    report, _ = run_precompute(make_settings(fake.url), corpus, tmp_path / "store", progress=False)
    assert report["complete"] and report["kv_blobs"] == 0 and report["entries_written"] > 0
    assert all(e.kv_blob_id is None for e in _entries(tmp_path / "store"))


def test_kv_capture_can_be_switched_off(fake: FakeUpstream, corpus: Path, tmp_path: Path) -> None:
    report, _ = run_precompute(
        make_settings(fake.url, capture_kv=False), corpus, tmp_path / "store", progress=False
    )
    assert report["complete"] and report["kv_blobs"] == 0
    assert fake.behaviour.kv_exports == 0


def test_backend_down_fails_before_anything_is_written(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    fake.behaviour.mode = "down"
    with pytest.raises(PrecomputeError, match="not available"):
        run_precompute(make_settings(fake.url), corpus, tmp_path / "store", progress=False)
    assert list(tmp_path.iterdir()) == [corpus]


def test_backend_unreachable_fails_before_anything_is_written(
    corpus: Path, tmp_path: Path, free_port: int
) -> None:
    with pytest.raises(PrecomputeError, match="cannot reach"):
        run_precompute(
            make_settings(f"http://127.0.0.1:{free_port}"), corpus, tmp_path / "store", progress=False
        )
    assert list(tmp_path.iterdir()) == [corpus]


def test_garbage_answers_stop_the_job_and_leave_only_whole_entries(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "store"
    fake.behaviour.mode = "garbage"
    report, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert report["failed"] and "unusable" in report["stopped_reason"]
    assert report["entries_written"] == 0 == len(_entries(store_path))
    fake.behaviour.mode = "ok"
    healed, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert healed["complete"] and healed["entries_written"] == len(_entries(store_path)) > 0


def test_an_answer_cut_off_keeps_its_whole_sentences(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    fake.behaviour.answer_text = "It is all in Europe. " * 10  # 50 words, cut at 16
    settings = make_settings(fake.url, answer_max_tokens=16, quote_when_ungrounded=False)
    report, _ = run_precompute(settings, corpus, tmp_path / "store", progress=False)
    assert report["complete"] and report["answers_truncated_dropped"] == 0
    assert report["answers_trimmed_to_whole_sentences"] == report["answers"]
    entries = _entries(tmp_path / "store")  # chunks that never say Europe keep none (ungrounded)
    stored = report["answers"] - report["answers_ungrounded_dropped"]
    assert len(entries) == report["entries_written"] == stored > 0
    for entry in entries:  # 16 words hold three whole sentences and the start of a fourth
        assert entry.answer == " ".join(["It is all in Europe."] * 3)
        assert entry.completion_tokens == SimpleTokenizer().count(entry.answer)


def test_answers_without_a_whole_sentence_are_dropped_never_stored_and_not_asked_again(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    fake.behaviour.answer_text = "and then the river " * 10
    store_path = tmp_path / "store"
    settings = make_settings(fake.url, answer_max_tokens=16, quote_when_ungrounded=False)
    report, _ = run_precompute(settings, corpus, store_path, progress=False)
    assert report["complete"] and report["answers"] == report["answers_truncated_dropped"] > 0
    assert report["entries_written"] == 0 and _entries(store_path) == []
    assert report["answers_trimmed_to_whole_sentences"] == 0
    assert fake.behaviour.kv_exports == 0
    fake.behaviour.requests.clear()
    again, _ = run_precompute(settings, corpus, store_path, progress=False)
    assert fake.behaviour.requests == [] and again["answers_truncated_dropped"] == report["answers"]


def test_answers_their_chunk_does_not_hold_are_dropped_never_stored_and_not_asked_again(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    fake.behaviour.answer_text = "The capital is Montgomery, founded in 1819."  # in neither document
    store_path = tmp_path / "store"
    settings = make_settings(fake.url, quote_when_ungrounded=False)
    report, _ = run_precompute(settings, corpus, store_path, progress=False)
    assert report["complete"] and report["answers"] == report["answers_ungrounded_dropped"] > 0
    assert report["answers_truncated_dropped"] == 0
    assert report["entries_written"] == 0 and _entries(store_path) == []
    assert fake.behaviour.kv_exports == 0
    fake.behaviour.requests.clear()
    again, _ = run_precompute(settings, corpus, store_path, progress=False)
    assert fake.behaviour.requests == [] and again["answers_ungrounded_dropped"] == report["answers"]


def test_an_answer_its_chunk_does_not_hold_is_replaced_by_the_sentence_the_question_is_about(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    """The fake writes each question from one sentence ("What does the document say about The Danube
    flows through ten countries before?"): that sentence is the answer stored, with its KV capture."""
    fake.behaviour.answer_text = "The capital is Montgomery, founded in 1819."
    store_path = tmp_path / "store"
    report, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert report["complete"] and report["answers_ungrounded_dropped"] == 0
    assert report["answers_quoted_from_chunk"] == report["answers"] == report["entries_written"] > 0
    entries = _entries(store_path)
    assert len(entries) == report["entries_written"] == fake.behaviour.kv_exports
    for entry in entries:
        assert any(entry.answer in text for text in DOCS.values())  # a sentence, or two: "It rises ..."
        assert "Montgomery" not in entry.answer
        asked = set(entry.query.removeprefix("What does the document say about ").rstrip("?").split())
        assert 2 * len(asked & set(entry.answer.rstrip(".").replace(",", "").split())) >= len(asked)
        assert entry.completion_tokens == SimpleTokenizer().count(entry.answer)


def test_token_budget_is_never_exceeded_and_a_rerun_continues(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "store"
    full, _ = run_precompute(make_settings(fake.url), corpus, tmp_path / "reference", progress=False)
    budget = full["tokens_spent"] // 3
    partial, _ = run_precompute(
        make_settings(fake.url, max_total_tokens=budget), corpus, store_path, progress=False
    )
    assert not partial["complete"] and not partial["failed"]
    assert partial["stopped_reason"] == "token budget reached"
    assert 0 < partial["tokens_spent_this_run"] <= budget
    while True:
        report, _ = run_precompute(
            make_settings(fake.url, max_total_tokens=budget), corpus, store_path, progress=False
        )
        assert report["tokens_spent_this_run"] <= budget
        if report["complete"]:
            break
    assert report["entries_written"] == len(_entries(store_path)) == full["entries_written"]


def test_missing_tokenizer_folder_is_refused_before_the_store_is_made(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    settings = make_settings(fake.url, tokenizer=str(tmp_path / "no-such-tokenizer"))
    with pytest.raises(PrecomputeError, match="cannot load tokenizer"):
        run_precompute(settings, corpus, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


def test_store_built_with_another_embedding_model_is_refused(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "store"
    Store.open(store_path, embedding_model="some-other-model", dim=384, progress=False).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(PrecomputeError, match="another embedding model"):
        run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_query_log_questions_are_answered_from_their_nearest_chunk(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    log = tmp_path / "queries.txt"
    log.write_text("Which birds nest in the Danube delta?\nWhat do farmers grow near Mount Etna?\n\n")
    report, _ = run_precompute(
        make_settings(fake.url), corpus, tmp_path / "store", query_log=log, progress=False
    )
    by_query = {e.query: e for e in _entries(tmp_path / "store")}
    assert by_query["Which birds nest in the Danube delta?"].meta["file"] == "rivers.txt"
    assert by_query["What do farmers grow near Mount Etna?"].meta["file"] == "volcanoes.md"
    assert by_query["What do farmers grow near Mount Etna?"].meta["origin"] == "query-log"
    assert report["complete"]


def test_an_edited_file_replaces_only_the_entries_of_its_changed_chunks(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "store"
    run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    before = {e.id: e for e in _entries(store_path)}
    (corpus / "rivers.txt").write_text(DOCS["rivers.txt"].replace("ten countries", "ten European countries"))
    fake.behaviour.requests.clear()
    second, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    after = {e.id: e for e in _entries(store_path)}

    assert fake.behaviour.requests, "the changed chunks are questioned again"
    asked = " ".join(m["content"] for body in fake.behaviour.requests for m in body["messages"])
    assert "Etna" not in asked, "an unchanged file is not questioned again"
    current = {e.meta["chunk"] for e in after.values()}
    stale = {i for i, e in before.items() if e.meta["chunk"] not in current}
    assert stale and all(before[i].meta["file"] == "rivers.txt" for i in stale)
    assert second["entries_retired_this_run"] == len(stale)
    for i in set(before) - stale:  # untouched, not rewritten
        assert (after[i].created, after[i].kv_blob_id) == (before[i].created, before[i].kv_blob_id)
    assert {i for i, e in before.items() if e.meta["file"] == "volcanoes.md"}.isdisjoint(stale)
    for i in stale & set(after):  # the same question asked of the new chunk: a new entry under its id
        assert after[i].created > before[i].created and after[i].meta["chunk"] in current
    with Store.open(store_path, read_only=True, progress=False) as store:
        for i in stale:
            with pytest.raises(KeyError):
                store.get_blob(str(before[i].kv_blob_id))
        sources = store.stats()["sources"]
    assert sources == {
        name: sum(e.meta["file"] == name for e in after.values()) for name in ("rivers.txt", "volcanoes.md")
    }

    (corpus / "rivers.txt").write_text(DOCS["rivers.txt"])  # reverted: its old chunks are questioned afresh
    third, _ = run_precompute(make_settings(fake.url), corpus, store_path, progress=False)
    original = {e.meta["chunk"] for e in before.values()}
    assert {e.meta["chunk"] for e in _entries(store_path)} == original
    assert third["complete"]
    assert third["entries_retired_this_run"] == sum(e.meta["chunk"] not in original for e in after.values())
