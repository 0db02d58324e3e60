"""Reading a corpus, chunking by tokens with overlap and provenance, and the work log's crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from precog.precompute.chunking import chunk_documents, chunk_id
from precog.precompute.ingest import CorpusError, read_corpus, read_query_log
from precog.precompute.records import (
    Answered,
    ChunkDone,
    ChunkRetired,
    KVCaptured,
    QueryLogDone,
    Question,
    Record,
    RoundDone,
    WorkLogFormatError,
    Written,
    decode,
)
from precog.precompute.tokens import SimpleTokenizer
from precog.precompute.worklog import WorkLog


def test_reads_every_format_and_skips_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nSome *markdown* text.")
    (tmp_path / "b.html").write_text(
        "<html><head><style>p{}</style></head>"
        "<body><p>Para one.</p><script>x()</script><p>Two</p></body></html>"
    )
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"title": "T", "text": "Record text."}) + "\n\n" + json.dumps("bare") + "\n"
    )
    (tmp_path / "d.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    (tmp_path / "e.jsonl").write_text("{not json\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    corpus = read_corpus(tmp_path)
    texts = {d.source: d.text for d in corpus.documents}
    assert texts == {
        "a.md": "# Title\n\nSome *markdown* text.",
        "b.html": "Para one.\nTwo",
        "c.jsonl#L1": "T\n\nRecord text.",
        "c.jsonl#L3": "bare",
    }
    assert [s.split(":")[0] for s in corpus.skipped] == ["d.txt", "e.jsonl"]


def test_empty_or_missing_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="has no"):
        read_corpus(tmp_path)
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(CorpusError, match="no readable text"):
        read_corpus(tmp_path)


def test_query_log_drops_blanks_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("What is X?\n\n  What is X?\nWho is Y?\n")
    assert read_query_log(path) == ["What is X?", "Who is Y?"]


def test_chunks_overlap_and_map_back_to_the_source(tmp_path: Path) -> None:
    text = " ".join(f"word{i}." for i in range(100))
    (tmp_path / "doc.txt").write_text(text)
    tok = SimpleTokenizer()
    chunks = list(chunk_documents(read_corpus(tmp_path).documents, tok, size=40, overlap=10))
    assert len(chunks) == 7  # 200 tokens, stride 30
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert tok.count(chunk.text) <= 40
        assert chunk.id == chunk_id(chunk.text)
        assert chunk.source == "doc.txt"
    first, second = tok.spans(chunks[0].text), tok.spans(chunks[1].text)
    assert len(first) == 40
    assert chunks[0].text[first[30][0] :] == chunks[1].text[: first[-1][1] - first[30][0]]
    assert len(second) == 40
    assert chunks[-1].end == len(text)


def _version_1_log(tmp_path: Path) -> None:
    """Lines as precog wrote them before records carried a version (`v`), some optional keys absent."""
    lines = [
        {
            "t": "round",
            "chunk": "c1",
            "round": 0,
            "temperature": 0.7,
            "parsed": 3,
            "duplicates": 1,
            "accepted": [{"id": "q1", "query": "What?", "chunk": "c1", "origin": "generated"}],
            "tokens": 10,
        },
        {"t": "answer", "id": "q1", "answer": "A.", "tokens": 5},
    ]
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_worklog_cuts_a_torn_line_and_replays_a_version_1_log(tmp_path: Path) -> None:
    _version_1_log(tmp_path)
    with open(tmp_path / "log.jsonl", "ab") as handle:
        handle.write(b'{"t":"written","id":"q')
    log, replay = WorkLog.open(tmp_path)
    assert replay.queries["q1"].query == "What?"
    assert replay.outcomes["c1"] == [(0, 3, 1, 0, 0)]
    assert replay.answers["q1"].answer == "A."
    assert replay.written == set()
    assert replay.tokens == 15
    log.append(Written("q1"))
    log.close()
    assert WorkLog.open(tmp_path)[1].written == {"q1"}


def test_worklog_records_round_trip_and_a_newer_version_is_refused(tmp_path: Path) -> None:
    question = Question("q1", "Who wrote it?", "c1", "generated", writer="qwen")
    records: list[Record] = [
        RoundDone("c1", 2, 4, 1, (question,), temperature=0.9, repeats=1, masked=3, tokens=40),
        QueryLogDone(2, 1, (Question("q2", "Why?", "c1", "query-log"),)),
        ChunkDone("c1"),
        Answered("q1", "Her.", 30, 2, trimmed=True, tokens=32),
        KVCaptured("q1", 1024),
        Written("q1", kv_bytes=1024),
        Written("q2", dropped="truncated"),
    ]
    log, _ = WorkLog.open(tmp_path)
    for record in records:
        log.append(record)
    log.close()
    assert [decode(line) for line in (tmp_path / "log.jsonl").read_bytes().splitlines()] == records
    replay = WorkLog.open(tmp_path)[1]
    assert replay.queries == {"q1": question, "q2": Question("q2", "Why?", "c1", "query-log")}
    assert (replay.parsed, replay.duplicates, replay.tokens) == (6, 2, 72)
    assert replay.dropped == {"q2"}
    with open(tmp_path / "log.jsonl", "ab") as handle:
        handle.write(b'{"t":"chunk_done","v":99,"chunk":"c2"}\n')
    with pytest.raises(WorkLogFormatError, match="version 99"):
        WorkLog.open(tmp_path)


def test_a_retired_chunk_is_forgotten_by_the_replay(tmp_path: Path) -> None:
    q1, q2 = Question("q1", "Who?", "c1", "generated"), Question("q2", "Where?", "c2", "generated")
    log, _ = WorkLog.open(tmp_path)
    log.append(RoundDone("c1", 0, 1, 0, (q1,), tokens=5))
    log.append(RoundDone("c2", 0, 1, 0, (q2,), tokens=5))
    for record in (ChunkDone("c1"), Answered("q1", "Her."), Written("q1"), ChunkRetired("c1", entries=1)):
        log.append(record)
    log.close()
    replay = WorkLog.open(tmp_path)[1]
    assert replay.known_chunks() == {"c2"}
    assert (replay.queries, replay.answers, replay.written) == ({"q2": q2}, {}, set())
    assert replay.tokens == 10  # what was spent stays spent
