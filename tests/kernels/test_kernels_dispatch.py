"""Backend choice: references on CPU by default, clear errors when Triton cannot run, and a package that
works where triton is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from precog.kernels.dispatch import use_triton


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_cpu_tensors_use_the_reference_unless_forced():
    cpu = torch.zeros(1)
    assert not use_triton("auto", cpu)
    assert not use_triton("torch", cpu)
    with pytest.raises(ValueError, match="backend"):
        use_triton("gpu", cpu)  # type: ignore[arg-type]


def test_package_works_without_triton_installed():
    result = _run_python(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` fail, as on a machine without it
        import torch
        from precog import kernels
        q = torch.zeros(1, 2, 8)
        cache = torch.randn(2, 4, 1, 8)
        out = kernels.paged_attention(q, cache, cache, torch.tensor([[1]]), torch.tensor([3]))
        assert torch.allclose(out.out[0, 0], cache[1, :3, 0].mean(dim=0), atol=1e-6)
        try:
            kernels.quantize(torch.randn(2, 8), 4, 8, backend="triton")
        except RuntimeError as error:
            print("refused:", error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "refused: backend='triton' needs the triton package" in result.stdout


def test_forcing_triton_on_cpu_needs_the_interpreter():
    result = _run_python(
        """
        import torch
        from precog import kernels
        try:
            kernels.quantize(torch.randn(2, 8), 4, 8, backend="triton")
        except RuntimeError as error:
            print("refused:", error)
        """,
        TRITON_INTERPRET="0",
    )
    assert result.returncode == 0, result.stderr
    assert "refused: backend='triton' on CPU tensors needs TRITON_INTERPRET=1" in result.stdout
