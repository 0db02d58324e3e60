"""Split documents into overlapping token windows, each with its provenance and a content-hash id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from precog.precompute.ingest import Document
from precog.precompute.tokens import Tokenizer


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of one document. `id` hashes the text, so the same text is the same chunk on every run."""

    id: str
    text: str
    source: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def chunk_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def chunk_documents(
    documents: Iterable[Document], tokenizer: Tokenizer, size: int, overlap: int
) -> Iterator[Chunk]:
    """Windows of `size` tokens that start every `size - overlap` tokens; identical texts appear once."""
    seen: set[str] = set()
    stride = size - overlap
    for doc in documents:
        spans = tokenizer.spans(doc.text)
        for first in range(0, max(len(spans) - overlap, 1), stride):
            window = spans[first : first + size]
            if not window:
                break
            start, end = window[0][0], window[-1][1]
            text = doc.text[start:end].strip()
            cid = chunk_id(text)
            if text and cid not in seen:
                seen.add(cid)
                yield Chunk(cid, text, doc.source, doc.offset + start, doc.offset + end)
