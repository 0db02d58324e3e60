"""`precog precompute` and `precog precompute sample`: exit codes and messages a user sees."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from precog.shell.cli import app
from tests.precompute.fake_upstream import FakeUpstream

runner = CliRunner()


def test_sample_writes_wikipedia_excerpts(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["precompute", "sample", "--out", str(tmp_path), "--articles", "2", "--chars", "500"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["wiki-000-anarchism.txt", "wiki-001-autism.txt"]
    title, body = files[0].read_text().split("\n\n", 1)
    assert title == "Anarchism"
    assert body.startswith("Anarchism is a political philosophy") and len(body) <= 501
    assert "'''" not in body and "==" not in body


def test_full_sample_has_every_article_and_news_story(tmp_path: Path) -> None:
    result = runner.invoke(app, ["precompute", "sample", "--out", str(tmp_path), "--full"])
    assert result.exit_code == 0, result.output
    names = [p.name for p in tmp_path.iterdir()]
    assert sum(n.startswith("wiki-") for n in names) >= 100
    assert sum(n.startswith("news-") for n in names) == 300


def test_empty_corpus_exits_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    result = runner.invoke(
        app, ["precompute", "--corpus", str(tmp_path / "corpus"), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 2
    assert "has no .md, .markdown, .txt, .html, .htm, .jsonl files" in result.output
    assert not (tmp_path / "s").exists()


def test_bad_setting_names_the_variable(tmp_path: Path, monkeypatch, corpus: Path) -> None:
    monkeypatch.setenv("PRECOG_PRECOMPUTE_CHUNK_TOKENS", "4")
    result = runner.invoke(app, ["precompute", "--corpus", str(corpus), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "PRECOG_PRECOMPUTE_CHUNK_TOKENS" in result.output


def test_a_run_prints_the_report_and_exits_zero(fake: FakeUpstream, corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "precog.toml"
    config.write_text('[precompute]\ntokenizer = "simple"\nchunk_tokens = 60\nchunk_overlap = 10\n')
    args = [
        "precompute",
        "--corpus",
        str(corpus),
        "--store",
        str(tmp_path / "s"),
        "--config",
        str(config),
        "--upstream-url",
        fake.url,
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "entries_written" in result.output
    fake.behaviour.mode = "garbage"
    (corpus / "more.txt").write_text(
        "Glaciers carve deep valleys into mountain ranges over many thousands of years."
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Run the same command again to resume" in result.output
