"""The offline pipeline: from a corpus to a store of likely questions, their answers and KV caches.

Names load on first use, so that registering `precog precompute` keeps `precog --help` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.core import lazy_exports

if TYPE_CHECKING:
    from precog.precompute.ingest import CorpusError
    from precog.precompute.job import PrecomputeError
    from precog.precompute.pipeline import Engine, run_precompute
    from precog.precompute.questions import grounded, parse_questions
    from precog.precompute.sample import write_sample
    from precog.precompute.settings import PrecomputeSettings, QuestionWriter

_EXPORTS = {
    "CorpusError": "precog.precompute.ingest",
    "PrecomputeError": "precog.precompute.job",
    "Engine": "precog.precompute.pipeline",
    "run_precompute": "precog.precompute.pipeline",
    "grounded": "precog.precompute.questions",
    "parse_questions": "precog.precompute.questions",
    "write_sample": "precog.precompute.sample",
    "PrecomputeSettings": "precog.precompute.settings",
    "QuestionWriter": "precog.precompute.settings",
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
