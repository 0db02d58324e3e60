"""What we install: one top-level import name, so that Hugging Face's `kernels` (which transformers
imports) and our packages never shadow each other, whatever the working directory."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter started in `cwd`: `python -c` puts the working directory first on
    sys.path, which is where a repository-root package would shadow an installed one."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out)]
    build.append(str(ROOT))
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("precog-*.whl")
    return built


def test_wheel_installs_only_the_precog_import_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"precog"}
    for part in ("store", "backend", "gateway", "precompute", "kernels"):
        assert f"precog/{part}/__init__.py" in names
    assert "precog/gateway/dashboard/index.html" in names  # package data travels too


@pytest.mark.parametrize("cwd", [ROOT, Path("/")], ids=["repository-root", "elsewhere"])
def test_hf_kernels_and_ours_import_side_by_side(cwd: Path) -> None:
    result = _python(
        "import transformers.integrations.hub_kernels as hub, kernels, precog.kernels as ours\n"
        "assert hub.get_kernel_hub is kernels.get_kernel\n"
        "from precog.backend import Engine\n"
        "print(kernels.__file__)\n"
        "print(ours.paged_attention.__module__)\n",
        cwd,
    )
    assert result.returncode == 0, result.stderr
    hf_file, ours_module = result.stdout.split()
    assert "site-packages" in hf_file
    assert not Path(hf_file).is_relative_to(ROOT / "precog")
    assert ours_module == "precog.kernels.paged_attention"


@pytest.mark.parametrize("module", ["precog", "precog.shell.cli", "precog.gateway.cli"])
def test_python_dash_m_from_the_repository_root(module: str) -> None:
    command = [sys.executable, "-m", module, "--help"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def _pins() -> list[tuple[str, str]]:
    """(name, version) of every pin in requirements/lock.txt (`make lock` writes it), in file order."""
    return re.findall(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", (ROOT / "requirements/lock.txt").read_text(), re.M)


def _locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in _pins()}


def test_every_lower_bound_is_the_locked_version() -> None:
    """A range in pyproject.toml starts at a version CI ran: the one in the lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(line for extra in extras for line in extra)]
    locked = _locked()
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "precog":
            continue
        bounds = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
        assert bounds, f"{line}: no lower bound"
        if name in locked:
            assert Version(bounds[0]) == Version(locked[name].split("+")[0]), f"{line} vs lock {locked[name]}"


def test_constraints_and_images_follow_the_lock() -> None:
    locked = _locked()
    constraints = (ROOT / "requirements/constraints.txt").read_text().split()
    assert constraints == [f"{n}=={v}" for n, v in _pins() if canonicalize_name(n) != "torch"]
    torch = locked["torch"].split("+")[0]
    for dockerfile in (ROOT / "deploy/docker").glob("Dockerfile.*"):
        assert f"ARG TORCH_VERSION={torch}\n" in dockerfile.read_text(), dockerfile.name
