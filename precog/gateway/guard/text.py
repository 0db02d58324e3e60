"""Tokens the guard compares: normalised words with contractions expanded and number words as digits.

Two questions are compared token by token, so both sides must be tokenised the same way whatever their
casing, spacing, punctuation or contractions ("can't" and "cannot" must both become "can not").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CONTRACTION_RULES = (
    (r"\bcan'?t\b", "can not"),
    (r"\bcannot\b", "can not"),
    (r"\bwon'?t\b", "will not"),
    (r"\bshan'?t\b", "shall not"),
    (r"\bain'?t\b", "is not"),
    (r"(\w+)n't\b", r"\1 not"),
    (r"\b(what|that|it|there|who|where|how|here|when|why|he|she)'s\b", r"\1 is"),
    (r"\b(i)'m\b", r"\1 am"),
    (r"(\w+)'re\b", r"\1 are"),
    (r"(\w+)'ve\b", r"\1 have"),
    (r"(\w+)'ll\b", r"\1 will"),
    (r"(\w+)'d\b", r"\1 would"),
    (r"(\w+)'s\b", r"\1"),
    (r"(\w+s)'(?=\s|$)", r"\1"),
)
_CONTRACTIONS = tuple((re.compile(pattern, re.IGNORECASE), by) for pattern, by in _CONTRACTION_RULES)
_HYPHEN_IN_WORD = re.compile(r"(?<=[^\W\d_])-(?=\w)|(?<=\d)-(?=[^\W\d_])")

_NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1_000_000,
    "dozen": 12,
    "single": 1,
    "double": 2,
    "twice": 2,
    "triple": 3,
}
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "twentieth": 20,
    "thirtieth": 30,
}

_TOKEN = re.compile(
    r"""
    (?P<time>\d{1,2}[:.]\d{2}\s?(?:am|pm)?|\d{1,2}\s?(?:am|pm)\b)
  | (?P<number>[£$€]?\d[\d,]*(?:\.\d+)?(?:[^\W\d_]+|%)?)
  | (?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)
  | (?P<symbol>[+\-*/=<>&])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One compared unit: `norm` is what alignment compares; `surface` keeps the casing for entity cues."""

    norm: str
    surface: str
    kind: str  # "word", "number", "time" or "symbol"
    sentence_start: bool


def expand_contractions(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'")
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return text


def number_word_value(word: str) -> int | None:
    """The value of a spelled-out cardinal or ordinal ("four" -> 4, "third" -> 3), else None."""
    word = word.casefold()
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    return _ORDINAL_WORDS.get(word)


def is_ordinal_word(word: str) -> bool:
    """ "third", "fifth": a spelled-out ordinal."""
    return word.casefold() in _ORDINAL_WORDS


def tokenize(text: str) -> list[Token]:
    """Split `text` into comparable tokens; case is folded in `norm` but kept in `surface`."""
    text = _HYPHEN_IN_WORD.sub(" ", expand_contractions(unicodedata.normalize("NFKC", text)))
    tokens: list[Token] = []
    at_start = True
    for match in re.finditer(rf"{_TOKEN.pattern}|(?P<stop>[.!?:;,])", text, re.VERBOSE):
        kind = match.lastgroup or "word"
        surface = match.group(0)
        if kind == "stop":
            at_start = at_start or surface in ".!?"
            continue
        norm = surface.casefold().replace(" ", "")
        if kind == "word" and number_word_value(norm) is not None:
            kind = "number"
        tokens.append(Token(norm=norm, surface=surface, kind=kind, sentence_start=at_start))
        at_start = False
    return tokens
