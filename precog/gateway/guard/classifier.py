"""A random forest shipped as a small JSON file, evaluated in plain Python: the gateway needs no scikit-learn.

Trees rather than a linear model because the evidence interacts: a high cosine means little once many
content words changed, and a changed word matters less when a near-synonym stands in for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = Path(__file__).with_name("weights.json")


@dataclass(frozen=True)
class Tree:
    """Parallel node arrays as scikit-learn lays them out; `feature` is -1 at a leaf, `value` is P(same)."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def __post_init__(self) -> None:
        sizes = {len(self.feature), len(self.threshold), len(self.left), len(self.right), len(self.value)}
        if len(sizes) != 1 or not self.feature:
            raise ValueError(f"tree node arrays disagree in length: {sorted(sizes)}")

    def predict(self, row: Sequence[float]) -> float:
        node = 0
        while self.feature[node] >= 0:
            node = self.left[node] if row[self.feature[node]] <= self.threshold[node] else self.right[node]
        return self.value[node]


@dataclass(frozen=True)
class PairClassifier:
    """P(same answer) = mean of the trees' leaf values; accept at or above `threshold`."""

    feature_names: tuple[str, ...]
    trees: tuple[Tree, ...]
    threshold: float

    def __post_init__(self) -> None:
        if not self.trees:
            raise ValueError("a classifier needs at least one tree")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        used = max(max(tree.feature) for tree in self.trees)
        if used >= len(self.feature_names):
            raise ValueError(f"trees use feature {used} but only {len(self.feature_names)} are named")

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """P(same answer) for each row of a [n, features] array."""
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {rows.shape}")
        # scikit-learn's trees compare float32 features; do the same, or values near a split flip sides.
        rounded = rows.astype(np.float32).astype(np.float64).tolist()
        trees = self.trees
        return np.array([sum(tree.predict(row) for tree in trees) / len(trees) for row in rounded])

    def save(self, path: Path = WEIGHTS_FILE) -> None:
        payload = {
            "feature_names": list(self.feature_names),
            "threshold": self.threshold,
            "trees": [
                [
                    list(tree.feature),
                    list(tree.threshold),
                    list(tree.left),
                    list(tree.right),
                    list(tree.value),
                ]
                for tree in self.trees
            ],
        }
        path.write_text(json.dumps(payload, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE, feature_names: tuple[str, ...] | None = None) -> PairClassifier:
        """Load shipped weights; with `feature_names`, refuse weights trained on other features."""
        raw = json.loads(path.read_text())
        model = cls(
            feature_names=tuple(raw["feature_names"]),
            trees=tuple(Tree(*(tuple(column) for column in tree)) for tree in raw["trees"]),
            threshold=float(raw["threshold"]),
        )
        if feature_names is not None and model.feature_names != feature_names:
            raise ValueError(f"{path} holds a model of features {model.feature_names}, not {feature_names}")
        return model
