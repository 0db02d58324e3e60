"""The settings profiles under deploy/: each loads in every service and sets what its comments say."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, load_every_section

PROFILES = sorted((DEPLOY / "profiles").glob("*.toml"))


def test_the_three_profiles_are_there() -> None:
    assert {p.stem for p in PROFILES} >= {"production", "gpu", "external-upstream"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_in_every_service(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_every_section(profile, monkeypatch)
    servers = [s for s in tomllib.loads(profile.read_text()) if "host" in type(loaded[s]).model_fields]
    assert servers, "a profile configures at least one server"
    assert all(loaded[s].host == "0.0.0.0" for s in servers)  # type: ignore[attr-defined]


def test_external_upstream_profile_keeps_precog_extensions_away_from_the_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_every_section(DEPLOY / "profiles" / "external-upstream.toml", monkeypatch)
    assert loaded["gateway"].upstream_kv_import is False  # type: ignore[attr-defined]
    assert loaded["precompute"].capture_kv is False  # type: ignore[attr-defined]
    assert loaded["gateway"].writeback_max_temperature == 0.0  # type: ignore[attr-defined]


def test_gpu_profile_runs_the_engine_on_cuda_through_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_every_section(DEPLOY / "profiles" / "gpu.toml", monkeypatch)
    engine = loaded["engine"]
    assert engine.attention_backend == "kernels"  # type: ignore[attr-defined]
    assert engine.device == "cuda" and engine.kv_compression() is None  # type: ignore[attr-defined]
    assert engine.max_num_batched_tokens >= engine.max_num_seqs  # type: ignore[attr-defined]


def test_a_misspelt_setting_in_a_profile_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nmax_num_seq = 4\n")
    with pytest.raises(ValueError, match="max_num_seq"):
        load_every_section(bad, monkeypatch)
