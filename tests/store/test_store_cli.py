"""`precog store …` end to end on a real store, through typer's runner."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from precog.store import Store
from precog.store.cli import app, parse_age

runner = CliRunner()


@pytest.fixture
def filled(store_path, make_entry) -> dict[str, list]:
    a = [make_entry(scope="tenant-a", query=f"refund question {i}") for i in range(4)]
    b = [
        make_entry(scope="tenant-b", query=f"shipping question {i}", created=time.time() - 7200)
        for i in range(3)
    ]
    with Store.open(store_path, progress=False) as store:
        store.put_many(a + b)
    return {"a": a, "b": b}


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_help_documents_every_subcommand() -> None:
    code, out = _run("--help")
    assert code == 0
    for command in ("stats", "list", "show", "verify", "rebuild-index", "export", "import", "invalidate"):
        assert command in out
        assert _run(command, "--help")[0] == 0


def test_stats_list_show_verify(store_path, filled) -> None:
    code, out = _run("stats", "--store", str(store_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["entries"] == 7 and data["scopes"] == {"tenant-a": 4, "tenant-b": 3}
    code, out = _run("list", "--store", str(store_path), "--scope", "tenant-b", "--json")
    assert code == 0 and {e["id"] for e in json.loads(out)} == {e.id for e in filled["b"]}
    code, out = _run("show", filled["a"][0].id, "--store", str(store_path), "--json")
    assert code == 0 and json.loads(out)["query"] == "refund question 0"
    code, out = _run("show", "missing-id", "--store", str(store_path))
    assert code == 1 and "no entry" in out
    code, out = _run("verify", "--store", str(store_path))
    assert code == 0 and "no problems" in out
    assert _run("stats", "--store", str(store_path))[0] == 0
    assert "7 entries" in _run("list", "--store", str(store_path))[1]


def test_invalidate_rebuild_export_import(store_path, filled, tmp_path) -> None:
    code, out = _run("invalidate", "--store", str(store_path), "--older-than", "1h")
    assert code == 0 and "invalidated 3 entries" in out
    code, out = _run("invalidate", "--store", str(store_path), "--substring", "REFUND question 1")
    assert code == 0 and "invalidated 1 entries" in out
    code, out = _run("invalidate", "--store", str(store_path))
    assert code == 1 and "at least one" in out
    code, out = _run("rebuild-index", "--store", str(store_path))
    assert code == 0 and "3 vectors" in out
    code, out = _run("export", str(tmp_path / "snap.tar.gz"), "--store", str(store_path))
    assert code == 0
    code, out = _run("import", str(tmp_path / "snap.tar.gz"), str(tmp_path / "copy"))
    assert code == 0 and "3 entries" in out
    with Store.open(tmp_path / "copy", create=False, progress=False) as copy:
        assert sorted(e.query for e in copy.entries()) == [f"refund question {i}" for i in (0, 2, 3)]


def test_clear_errors(tmp_path) -> None:
    code, out = _run("stats", "--store", str(tmp_path / "nothing"))
    assert code == 1 and "no store" in out and "Traceback" not in out
    (tmp_path / "notes.txt").write_text("x")
    code, out = _run("verify", "--store", str(tmp_path))
    assert code == 1 and "not a precog store" in out
    code, out = _run("invalidate", "--store", str(tmp_path), "--older-than", "soon")
    assert code != 0 and "not an age" in out


def test_verify_exits_1_on_damage(store_path, filled) -> None:
    import rocksdict

    from precog.store.db import COLUMN_FAMILIES

    options = rocksdict.Options(raw_mode=True)
    families = {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES}
    db = rocksdict.Rdict(str(store_path / "db"), options=options, column_families=families)
    entries = db.get_column_family("entries")
    key = filled["a"][0].id.encode()
    entries[key] = entries[key][:-3] + b"xyz"
    del entries
    db.close()
    code, out = _run("verify", "--store", str(store_path), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and report["problems"][0]["kind"] == "corrupt-record"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600)]
)
def test_parse_age(text, seconds) -> None:
    assert parse_age(text) == seconds
