"""`precog model prepare`: where the checkpoint goes, and that a complete one is never redone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend import default_model_dir, prepare_model
from precog.cli import app


def test_default_location_follows_precog_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRECOG_HOME", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("PRECOG_HOME")
    assert default_model_dir() == Path.home() / ".cache" / "precog" / "models" / "smollm2-135m-instruct"


def test_a_complete_checkpoint_is_returned_untouched(model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert prepare_model(model_dir) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(f".{model_dir.name}.")]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The command points the root logger at the runner's stderr, which closes after it; undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_prints_the_checkpoint_path(model_dir: Path, root_logging: None) -> None:
    result = CliRunner().invoke(app, ["model", "prepare", "--out", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in model_dir.iterdir()
    }
