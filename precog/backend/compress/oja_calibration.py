"""OjaKV's offline calibration: per layer and KV head, the PCA bases of the model's own keys and values.

The calibration text is English prose with code from the Python documentation that ships with every
CPython (`pydoc_data.topics`), so it needs no download. The bases are computed once from one prefill
of `CALIBRATION_TOKENS` tokens (seconds on a CPU) and cached as safetensors beside the checkpoint,
written atomically and tagged with a fingerprint of the token ids they came from, so a changed text or
tokenizer recomputes them instead of reusing stale ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from precog.backend.compress.oja import principal_bases

log = logging.getLogger(__name__)

CALIBRATION_FILE = "ojakv_pca.safetensors"
CALIBRATION_TOKENS = 512
_TOPICS = ("assignment", "class", "exceptions", "for", "function", "import", "with", "try", "lambda")

KVCollector = Callable[[list[int]], tuple[list[torch.Tensor], list[torch.Tensor]]]


@dataclass(frozen=True, slots=True)
class PCABases:
    """keys, values [L, KVH, D, D]: eigenvectors by falling eigenvalue; *_eigenvalues [L, KVH, D]."""

    keys: torch.Tensor
    values: torch.Tensor
    key_eigenvalues: torch.Tensor
    value_eigenvalues: torch.Tensor

    def top(self, layer: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's rank-r key and value bases, [KVH, D, r] each (copies, safe to update)."""
        return self.keys[layer, ..., :rank].clone(), self.values[layer, ..., :rank].clone()


def calibration_text() -> str:
    """A few sections of the Python language reference (shipped with CPython)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip() for name in _TOPICS if name in topics)


def fingerprint(token_ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, token_ids)).encode()).hexdigest()[:16]


def calibrate(keys: list[torch.Tensor], values: list[torch.Tensor]) -> PCABases:
    """Per-layer keys, values [KVH, T, D] -> their PCA bases."""
    k_vectors, k_values = principal_bases(torch.stack(keys))
    v_vectors, v_values = principal_bases(torch.stack(values))
    return PCABases(k_vectors, v_vectors, k_values, v_values)


def save_bases(path: Path, bases: PCABases, tag: str) -> None:
    """Write atomically (temporary file in the same folder, then rename)."""
    tensors = {
        "keys": bases.keys.contiguous(),
        "values": bases.values.contiguous(),
        "key_eigenvalues": bases.key_eigenvalues.contiguous(),
        "value_eigenvalues": bases.value_eigenvalues.contiguous(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"fingerprint": tag})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_bases(path: Path, tag: str) -> PCABases | None:
    """The cached bases if the file exists and was computed from the same tokens; else None."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("fingerprint") != tag:
            return None
    t = load_file(str(path))
    return PCABases(t["keys"], t["values"], t["key_eigenvalues"], t["value_eigenvalues"])


def load_or_calibrate(path: Path, token_ids: list[int], collect: KVCollector) -> PCABases:
    """Cached bases for these calibration tokens, or compute them with `collect` and cache them.

    A folder we cannot write to (a read-only checkpoint) only costs the cache: the bases still load."""
    tag = fingerprint(token_ids)
    cached = load_bases(path, tag)
    if cached is not None:
        return cached
    keys, values = collect(token_ids)
    bases = calibrate(keys, values)
    try:
        save_bases(path, bases, tag)
    except OSError as exc:
        log.warning("ojakv calibration not cached", extra={"path": str(path), "error": str(exc)})
    log.info("ojakv calibrated", extra={"path": str(path), "tokens": len(token_ids)})
    return bases
