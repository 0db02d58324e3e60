"""Token alignment of two questions: which spans differ, and which of those differences are harmless.

difflib aligns the normalised tokens; each differing span is then explained away where it can be (a typo,
another form of the same word, a word split in two, a word moved elsewhere, a filler). What is left are
the content words that really changed, which the typed checks and the classifier look at.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from precog.gateway.guard.lexicon import (
    FILLERS,
    FUNCTION_WORDS,
    NEGATING_PREFIXES,
    are_polar_opposites,
    are_synonyms,
)
from precog.gateway.guard.text import Token

_SUFFIXES = (
    "ations",
    "ation",
    "ions",
    "ion",
    "ments",
    "ment",
    "ings",
    "ing",
    "ers",
    "er",
    "ies",
    "es",
    "ed",
    "ly",
    "s",
    "e",
    "y",
)


@dataclass(frozen=True, slots=True)
class Edit:
    """One differing span: `left` tokens of the query replaced by `right` tokens of the candidate."""

    left: tuple[Token, ...]
    right: tuple[Token, ...]


@dataclass(slots=True)
class Alignment:
    """The differing spans and what remains of them once harmless differences are explained away."""

    edits: list[Edit]
    matched: int
    typos: int = 0
    same_stem: int = 0
    synonyms: int = 0
    moved: int = 0
    fillers: int = 0
    opposites: list[tuple[str, str]] = field(default_factory=list)
    left_content: list[Token] = field(default_factory=list)
    right_content: list[Token] = field(default_factory=list)
    function_changes: int = 0


def stem(word: str) -> str:
    """A crude suffix-stripping stem: enough to match "refunds" with "refund", "quotation" with "quote"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def are_opposites(a: str, b: str) -> bool:
    """Polar opposites ("bigger"/"smaller") or a negating prefix ("unsafe"/"safe", "unarchive"/"archive")."""
    if are_polar_opposites(a, b):
        return True
    shorter, longer = sorted((a, b), key=len)
    return len(shorter) >= 3 and any(longer == prefix + shorter for prefix in NEGATING_PREFIXES)


def is_typo(a: str, b: str, names: bool = False) -> bool:
    """One slip of the keyboard: an edit distance of 1 in words of four letters or more (2 from nine).

    Names need six letters: "Mary" and "Mark" are two people, "Manchster" is Manchester.
    """
    if min(len(a), len(b)) < (6 if names else 4) or a.isdigit() or b.isdigit():
        return False
    return edit_distance(a, b) <= (2 if min(len(a), len(b)) >= 9 else 1)


def _looks_like_name(token: Token) -> bool:
    return any(c.isupper() for c in token.surface) and not token.sentence_start


def _is_content(token: Token) -> bool:
    return token.kind != "symbol" and token.norm not in FILLERS


def align(left: Sequence[Token], right: Sequence[Token]) -> Alignment:
    """Align `left` against `right` and classify every token that differs."""
    matcher = SequenceMatcher(a=[t.norm for t in left], b=[t.norm for t in right], autojunk=False)
    edits = [
        Edit(tuple(left[i1:i2]), tuple(right[j1:j2]))
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
        if op != "equal"
    ]
    result = Alignment(edits=edits, matched=sum(block.size for block in matcher.get_matching_blocks()))
    removed = [t for edit in edits for t in edit.left]
    added = [t for edit in edits for t in edit.right]
    _cancel_moved(result, removed, added)
    _cancel_joined(removed, added)
    _pair_changed_words(result, removed, added)
    for side, remaining in ((result.left_content, removed), (result.right_content, added)):
        for token in remaining:
            if _is_content(token):
                side.append(token)
            elif token.norm in FUNCTION_WORDS:
                result.function_changes += 1
            else:
                result.fillers += 1
    return result


def _cancel_moved(result: Alignment, removed: list[Token], added: list[Token]) -> None:
    """Drop tokens that were only moved: present among both the removed and the added tokens."""
    common = Counter(t.norm for t in removed) & Counter(t.norm for t in added)
    result.moved = sum(common.values())
    for side in (removed, added):
        budget = Counter(common)
        kept = []
        for token in side:
            if budget[token.norm]:
                budget[token.norm] -= 1
            else:
                kept.append(token)
        side[:] = kept


def _cancel_joined(removed: list[Token], added: list[Token]) -> None:
    """Drop a word written as one on one side and as two on the other ("instore" / "in store")."""
    for whole_side, parts_side in ((removed, added), (added, removed)):
        for i in range(len(parts_side) - 1):
            joined = parts_side[i].norm + parts_side[i + 1].norm
            match = next((t for t in whole_side if t.norm == joined), None)
            if match is not None:
                whole_side.remove(match)
                del parts_side[i : i + 2]
                return


def _pair_changed_words(result: Alignment, removed: list[Token], added: list[Token]) -> None:
    """Pair removed with added words: opposites are recorded, typos and other forms of a word cancel out."""
    for token in list(removed):
        for other in added:
            if are_opposites(token.norm, other.norm):
                result.opposites.append((token.surface, other.surface))
                break
            if token.kind == "word" and other.kind == "word":
                if stem(token.norm) == stem(other.norm):
                    result.same_stem += 1
                elif is_typo(token.norm, other.norm, _looks_like_name(token) or _looks_like_name(other)):
                    result.typos += 1
                elif are_synonyms(token.norm, other.norm) and not (
                    _looks_like_name(token) or _looks_like_name(other)
                ):
                    result.synonyms += 1
                else:
                    continue
                removed.remove(token)
                added.remove(other)
                break
