"""Question rounds: who writes each (the upstream and other servers in turn, while answers, KV caches and
the scope stay with the upstream) and what a round keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from precog.core import load_settings
from precog.precompute import PrecomputeError, PrecomputeSettings, run_precompute
from precog.precompute.chunking import Chunk
from precog.precompute.generate import (
    FAMILIES,
    SENTENCE_QUESTIONS,
    ChatCall,
    ChunkProgress,
    Round,
    generate_for_chunk,
    round_plan,
    round_seed,
)
from precog.precompute.upstream import Completion, UpstreamGarbage
from precog.store import Store, scope_key
from tests.conftest import _free_port
from tests.precompute.conftest import WRITER_MODEL, make_settings
from tests.precompute.fake_upstream import MODEL, FakeUpstream


def _question_seeds(server: FakeUpstream) -> set[int]:
    return {r["seed"] for r in server.behaviour.requests if "Document:\n" in r["messages"][-1]["content"]}


def test_one_writer_keeps_the_families_in_turn_and_each_family_moves_its_own_window() -> None:
    assert [round_plan(n, 1) for n in range(8)] == [
        (0, "sentence", 0),
        (0, "plain", 0),
        (0, "sentence", 1),
        (0, "example", 0),
        (0, "sentence", 2),
        (0, "passage", 0),
        (0, "sentence", 3),
        (0, "plain", 1),
    ]


def test_sentence_rounds_show_the_lead_and_one_sentence_after_the_worked_example() -> None:
    chunk = Chunk(
        "c", "Albedo\n\nAlbedo is reflectivity. It is dimensionless. It comes from Latin.", "a.txt", 0, 70
    )
    prompts: list[list[dict[str, str]]] = []

    def chat(messages: list[dict[str, str]], temperature: float, tokens: int, seed: int) -> Completion:
        prompts.append(messages)
        return Completion(f"What is albedo {len(prompts)}?", 10, 10)

    settings = PrecomputeSettings(max_rounds_per_chunk=5)
    generate_for_chunk(chunk, ChunkProgress(), settings, len, [chat], lambda r, _w: (r.parsed, 0), print)
    sentence_rounds = [prompts[0], prompts[2], prompts[4]]
    for messages, sentence in zip(sentence_rounds, ["reflectivity", "dimensionless", "Latin"], strict=True):
        request = messages[-1]["content"]
        assert len(messages) == 4 and messages[1]["content"].startswith("Document:\nHoney bee")
        assert "Albedo\n\n" in request and sentence in request and request.count("It ") <= 1
        assert f"Write {SENTENCE_QUESTIONS} different questions" in request
    assert f"Write {settings.questions_per_round} different questions" in prompts[1][-1]["content"]


def test_every_writer_is_asked_with_every_prompt_family() -> None:
    plans = [round_plan(n, 2) for n in range(2 * len(FAMILIES))]
    for writer in (0, 1):
        assert sorted(family for w, family, _ in plans if w == writer) == sorted(FAMILIES)


def test_writers_take_turns_and_only_the_upstream_answers(
    fake: FakeUpstream, writer: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    settings = make_settings(
        fake.url, max_queries_per_chunk=8, max_rounds_per_chunk=4, question_writers=[{"url": writer.url}]
    )
    report, _ = run_precompute(settings, corpus, tmp_path / "store", progress=False)
    assert report["complete"]
    store = Store.open(tmp_path / "store", read_only=True, progress=False)
    try:
        entries = list(store.entries())
    finally:
        store.close()
    by_writer = {name: [e for e in entries if e.meta["writer"] == name] for name in (MODEL, WRITER_MODEL)}
    assert by_writer[MODEL] and by_writer[WRITER_MODEL]
    assert len(entries) == sum(map(len, by_writer.values())) == report["entries_written"]
    assert report["queries_accepted_by_writer"] == {name: len(found) for name, found in by_writer.items()}
    assert all(e.query.startswith("Could you explain") for e in by_writer[WRITER_MODEL])
    for entry in entries:  # the writer's questions are answered by the upstream, in its scope
        assert entry.model == MODEL and entry.scope == scope_key(MODEL, settings.system_prompt, "acme")
        assert entry.answer.startswith("According to the document") and entry.kv_blob_id is not None

    assert all("Document:\n" in r["messages"][-1]["content"] for r in writer.behaviour.requests)
    assert writer.behaviour.kv_exports == 0
    chunks = {e.meta["chunk"] for e in entries}
    rounds = range(settings.max_rounds_per_chunk)
    assert _question_seeds(writer) <= {round_seed(c, n) for c in chunks for n in rounds if n % 2}
    assert _question_seeds(fake) <= {round_seed(c, n) for c in chunks for n in rounds if n % 2 == 0}


@pytest.mark.parametrize("model", [None, "another-model"])
def test_a_writer_that_cannot_serve_fails_before_anything_is_written(
    fake: FakeUpstream, writer: FakeUpstream, corpus: Path, tmp_path: Path, model: str | None
) -> None:
    url = f"http://127.0.0.1:{_free_port()}" if model is None else writer.url
    settings = make_settings(fake.url, question_writers=[{"url": url, "model": model}])
    with pytest.raises(PrecomputeError, match="question writer" if model is None else "another-model"):
        run_precompute(settings, corpus, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()
    assert fake.behaviour.requests == []


def test_writers_come_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "precog.toml"
    monkeypatch.setenv("PRECOG_CONFIG", str(config))
    config.write_text(
        '[precompute]\nmodel = "small"\n\n'
        '[[precompute.question_writers]]\nurl = "http://writer:8002"\nmodel = "large"\n'
    )
    settings = load_settings(PrecomputeSettings)
    assert [(w.url, w.model) for w in settings.question_writers] == [("http://writer:8002", "large")]
    config.write_text('[[precompute.question_writers]]\nadress = "http://writer:8002"\n')
    with pytest.raises(ValueError, match="question_writers"):
        load_settings(PrecomputeSettings)


def test_a_round_cut_at_max_tokens_keeps_only_its_whole_questions() -> None:
    chunk = Chunk("c", "Albedo is the fraction of sunlight that a surface reflects.", "a.txt", 0, 60)
    reply = "1. What is albedo?\n2. How much sunlight does a surface reflect?\n3. What does albedo"
    judged: list[list[str]] = []

    def judge(round_: Round, wanted: int) -> tuple[list[str], int]:
        judged.append(round_.parsed)
        return round_.parsed, 0

    def chat(messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int) -> Completion:
        return Completion(reply, 10, max_tokens, "length")

    settings = PrecomputeSettings(max_rounds_per_chunk=1)
    generate_for_chunk(chunk, ChunkProgress(), settings, len, [chat], judge, lambda _exc: None)
    assert judged == [["What is albedo?", "How much sunlight does a surface reflect?"]]


def test_each_writer_has_its_own_temperature_and_repeats_count_as_duplicates() -> None:
    """Writer 0 writes the same questions every round (repeats, which the judge never sees); writer 1 new
    ones: only writer 0 is heated, once per turn of the families, and a resumed chunk replays both."""
    chunk = Chunk("c", "Albedo is the fraction of sunlight that a surface reflects.", "a.txt", 0, 60)
    heard: list[tuple[int, float]] = []
    fresh = iter(range(1000))

    def writer(index: int) -> ChatCall:
        def chat(messages: list[dict[str, str]], temperature: float, tokens: int, seed: int) -> Completion:
            heard.append((index, temperature))
            if index == 0:
                lines = [f"What is albedo number {i}?" for i in range(5)]
            else:
                lines = [f"How much sunlight does surface {next(fresh)} reflect?" for _ in range(5)]
            return Completion("\n".join(lines), 10, 10)

        return chat

    judged: list[Round] = []

    def judge(round_: Round, wanted: int) -> tuple[list[str], int]:
        judged.append(round_)
        return round_.parsed, round_.repeats

    turn = len(FAMILIES)
    settings = PrecomputeSettings(max_queries_per_chunk=1000, max_rounds_per_chunk=4 * turn)
    chats = [writer(0), writer(1)]
    progress = ChunkProgress()
    generate_for_chunk(chunk, progress, settings, len, chats, judge, lambda _exc: None)
    assert [r.repeats for r in judged if r.writer == 0] == [0] + [5] * (2 * turn - 1)
    assert {r.repeats for r in judged if r.writer == 1} == {0}
    start, step = settings.temperature_start, settings.temperature_step
    hotter = round(start + step, 4)
    assert [t for w, t in heard if w == 0] == [start] * turn + [hotter] * turn  # mostly repeats, first turn
    assert {t for w, t in heard if w == 1} == {start}

    settings = settings.model_copy(update={"max_rounds_per_chunk": 6 * turn})
    heard.clear()
    generate_for_chunk(chunk, progress, settings, len, chats, judge, lambda _exc: None)
    assert [t for w, t in heard if w == 0] == [round(hotter + step, 4)] * turn
    assert {t for w, t in heard if w == 1} == {start}


def test_a_garbage_round_keeps_its_number_so_later_rounds_stay_with_their_writer() -> None:
    chunk = Chunk("c", "Albedo is the fraction of sunlight that a surface reflects.", "a.txt", 0, 60)
    calls: list[int] = []

    def writer(index: int) -> ChatCall:
        def chat(messages: list[dict[str, str]], temperature: float, tokens: int, seed: int) -> Completion:
            calls.append(index)
            if len(calls) == 2:
                raise UpstreamGarbage("not a chat completion")
            return Completion(f"What is albedo {len(calls)}?", 10, 10)

        return chat

    garbage: list[UpstreamGarbage] = []
    progress = ChunkProgress()
    settings = PrecomputeSettings(max_queries_per_chunk=100, max_rounds_per_chunk=4)
    chats = [writer(0), writer(1)]
    finished = generate_for_chunk(
        chunk, progress, settings, len, chats, lambda r, w: (r.parsed, 0), garbage.append
    )
    assert calls == [0, 1, 0, 1] and len(garbage) == 1
    assert [outcome.number for outcome in progress.outcomes] == [0, 2, 3]
    assert finished and progress.next_round == 4
