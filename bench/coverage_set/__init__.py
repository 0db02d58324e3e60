"""The hand-written coverage set: questions a person asks about the 10-article sample corpus
(`precog precompute sample --articles 10`, 900 characters an article), each with answer keywords found in
its article, and questions that must miss (off-corpus, and near-topic ones whose answer the articles do
not hold). See README.md here for how it was written and which half is blind."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

QUESTIONS = Path(__file__).with_name("questions.jsonl")
ARTICLES = 10
CHARS = 900
Kind = Literal["answerable", "off-corpus", "near-topic"]
Split = Literal["tune", "blind"]


@dataclass(frozen=True, slots=True)
class CoverageQuestion:
    id: str
    kind: Kind
    question: str
    split: Split
    article: str | None = None  # the sample file that answers it
    keywords: tuple[str, ...] = ()  # any one of them, as a whole word in any case, makes an answer good

    @property
    def answerable(self) -> bool:
        return self.kind == "answerable"

    def answered_by(self, text: str) -> bool:
        """Whether `text` contains one of the answer keywords (whole words, any case)."""
        return any(re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.IGNORECASE) for k in self.keywords)


def load(split: Split | None = None) -> list[CoverageQuestion]:
    """The set (or one half of it), in file order."""
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    questions = [CoverageQuestion(**{**r, "keywords": tuple(r.get("keywords", ()))}) for r in rows]
    return [q for q in questions if split is None or q.split == split]
