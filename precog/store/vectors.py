"""Validation and normalisation of embedding vectors before they reach RocksDB or FAISS."""

from __future__ import annotations

import numpy as np

# A vector whose norm is below this carries no direction and cannot be normalised meaningfully.
_MIN_NORM = 1e-6


def normalised(vector: np.ndarray | list[float], dim: int) -> np.ndarray:
    """Return `vector` as an L2-normalised float32 array of shape [dim]; ValueError if it cannot be one."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (dim,):
        raise ValueError(f"embedding must have shape ({dim},), got {tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError("embedding contains NaN or infinite values")
    norm = float(np.linalg.norm(array))
    if norm < _MIN_NORM:
        raise ValueError("embedding is the zero vector; it has no direction to search by")
    return np.ascontiguousarray(array / norm, dtype=np.float32)
