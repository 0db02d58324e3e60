"""Read a corpus folder (or one file) of .md, .txt, .html and .jsonl documents, and an optional query log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".jsonl")


class CorpusError(ValueError):
    """The corpus cannot be used at all (missing, empty, nothing readable)."""


@dataclass(frozen=True, slots=True)
class Document:
    """Text of one file (or one JSONL record). `source` is the file relative to the corpus root, with
    `#L<n>` for a JSONL line; `offset` is where `text` starts in the file's extracted text."""

    source: str
    text: str
    offset: int = 0


@dataclass(slots=True)
class Corpus:
    documents: list[Document] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "noscript"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _jsonl_documents(name: str, raw: str) -> list[Document]:
    """One document per line: an object with a "text" field (optional "title"), or a bare string."""
    docs = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if isinstance(record, str):
            text = record
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            title = record.get("title")
            text = f"{title}\n\n{record['text']}" if isinstance(title, str) and title else record["text"]
        else:
            raise ValueError(f"line {number} is neither a string nor an object with a 'text' string")
        if text.strip():
            docs.append(Document(f"{name}#L{number}", text))
    return docs


def _read_file(path: Path, name: str) -> list[Document]:
    raw = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_documents(name, raw)
    text = html_to_text(raw) if suffix in (".html", ".htm") else raw
    return [Document(name, text)] if text.strip() else []


def read_corpus(root: Path) -> Corpus:
    """All readable documents under `root`, sorted by path; unreadable or malformed files are listed in
    `skipped` with the reason. Raises CorpusError when there is nothing to work on."""
    if not root.exists():
        raise CorpusError(f"corpus {root} does not exist")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    candidates = [p for p in files if p.suffix.lower() in SUFFIXES]
    if not candidates:
        raise CorpusError(f"corpus {root} has no {', '.join(SUFFIXES)} files")
    corpus = Corpus()
    for path in candidates:
        name = path.name if root.is_file() else str(path.relative_to(root))
        try:
            corpus.documents.extend(_read_file(path, name))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            corpus.skipped.append(f"{name}: {exc}")
    if not corpus.documents:
        detail = "; ".join(corpus.skipped) if corpus.skipped else "all files are empty"
        raise CorpusError(f"corpus {root} has no readable text ({detail})")
    return corpus


def read_query_log(path: Path) -> list[str]:
    """Historical user queries, one a line; blank lines and exact repeats dropped, order kept."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"query log {path} is unreadable: {exc}") from exc
    return list(dict.fromkeys(q.strip() for q in lines if q.strip()))
