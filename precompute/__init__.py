"""The offline pipeline: from a corpus to a store of likely questions, their answers and KV caches.

Names load on first use, so that registering `precog precompute` keeps `precog --help` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.lazy import lazy_exports

if TYPE_CHECKING:
    from precompute.ingest import CorpusError
    from precompute.job import PrecomputeError
    from precompute.pipeline import Engine, run_precompute
    from precompute.questions import grounded, parse_questions
    from precompute.sample import write_sample
    from precompute.settings import PrecomputeSettings, QuestionWriter

_EXPORTS = {
    "CorpusError": "precompute.ingest",
    "PrecomputeError": "precompute.job",
    "Engine": "precompute.pipeline",
    "run_precompute": "precompute.pipeline",
    "grounded": "precompute.questions",
    "parse_questions": "precompute.questions",
    "write_sample": "precompute.sample",
    "PrecomputeSettings": "precompute.settings",
    "QuestionWriter": "precompute.settings",
}

__all__ = [
    "CorpusError",
    "Engine",
    "PrecomputeError",
    "PrecomputeSettings",
    "QuestionWriter",
    "grounded",
    "parse_questions",
    "run_precompute",
    "write_sample",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
