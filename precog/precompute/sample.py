"""A sample corpus from the public text that ships with gensim: a shortened English Wikipedia dump (CC BY-SA)
and 300 ABC news stories (lee_background.cor). The small sample is a few article openings, so a store builds
in minutes on a CPU; `full` writes every article (over 1,000 characters) and every news story."""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator
from pathlib import Path

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS = "lee_background.cor"
MIN_ARTICLE_CHARS = 1000
_MARKUP = re.compile(r"'{2,}|^=+\s*(.*?)\s*=+$", re.MULTILINE)


def _clean(text: str) -> str:
    """filter_wiki leaves bold/italic quotes and heading markers; keep the heading words, drop the rest."""
    text = _MARKUP.sub(lambda m: m.group(1) or "", text)
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def wikipedia_articles() -> Iterator[tuple[str, str]]:
    """(title, plain text) of each article of at least MIN_ARTICLE_CHARS, in dump order."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with bz2.BZ2File(datapath(WIKI_DUMP)) as dump:
        for title, markup, _page_id in extract_pages(dump):
            text = _clean(filter_wiki(markup))
            if len(text) >= MIN_ARTICLE_CHARS and not text.upper().startswith("#REDIRECT"):
                yield title, text


def news_stories() -> list[str]:
    from gensim.test.utils import datapath

    return [
        line.strip() for line in Path(datapath(NEWS)).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def excerpt(text: str, chars: int) -> str:
    """The opening of `text`, cut at the last sentence end before `chars`."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    end = max(head.rfind(". "), head.rfind(".\n"))
    return head[: end + 1] if end > 0 else head


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "article"


def write_sample(out: Path, full: bool = False, articles: int = 3, chars: int = 900) -> int:
    """Write the sample as .txt files into `out` (same content on every run); returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for index, (title, text) in enumerate(wikipedia_articles()):
        if not full and index >= articles:
            break
        body = text if full else excerpt(text, chars)
        (out / f"wiki-{index:03d}-{_slug(title)}.txt").write_text(f"{title}\n\n{body}\n", encoding="utf-8")
        written += 1
    if full:
        for index, story in enumerate(news_stories()):
            (out / f"news-{index:03d}.txt").write_text(story + "\n", encoding="utf-8")
            written += 1
    return written
