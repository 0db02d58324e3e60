"""Word classes the typed checks rely on: negators, polar opposites, function words and fillers.

Polar opposites are WordNet's antonyms (precog.gateway.guard.wordnet) plus the closed class of opposite
prepositions; the rest are closed grammatical classes. Anything they miss is left to the classifier, which
sees how much content changed and how far apart the changed words are.
"""

from __future__ import annotations

from functools import cache

from precog.gateway.guard.wordnet import antonyms, senses

NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "nowhere",
        "unable",
    }
)

NEGATING_PREFIXES = ("un", "non", "dis", "in", "im", "il", "ir", "de", "anti")
# A negating prefix written as its own word once hyphens are split ("non-refundable" -> "non refundable").
DETACHED_PREFIXES = frozenset({"non", "un", "anti", "dis", "de"})

# Opposite prepositions and particles of direction, order and inclusion: a closed grammatical class,
# listed whole (WordNet has no prepositions). Every other polar opposite comes from WordNet.
_DIRECTION_PAIRS = """
to from, into out, onto off, towards away, up down, in out, inside outside, above below, over under,
before after, with without, for against, on off, ahead behind, forward back, upward downward,
inbound outbound, incoming outgoing, plus minus, more less, most least, all none, always never
""".strip()


def _opposites(text: str) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for pair in text.replace("\n", " ").split(","):
        words = pair.split()
        if len(words) == 2:
            left, right = words
            table.setdefault(left, set()).add(right)
            table.setdefault(right, set()).add(left)
    return {word: frozenset(others) for word, others in table.items()}


_ENDINGS = ("s", "es", "ed", "d", "ing", "er", "r", "est", "st")


def _bases(word: str) -> set[str]:
    """`word` and the lemmas it may inflect: plural, tense, comparative ("bigger" -> "big", "earlier" ->
    "early")."""
    bases = {word}
    for ending in _ENDINGS:
        stem = word.removesuffix(ending)
        if stem == word or len(stem) < 2:
            continue
        bases.add(stem)
        if len(stem) > 2 and stem[-1] == stem[-2]:
            bases.add(stem[:-1])  # a doubled consonant: "bigger", "stopped"
        if stem.endswith("i"):
            bases.add(stem[:-1] + "y")  # "earlier", "carried"
    return bases


def are_polar_opposites(a: str, b: str) -> bool:
    """Antonyms, also through a plural, tense or comparative ending ("increased" / "decreased")."""
    table = _opposite_table()
    right = _bases(b)
    return any(not right.isdisjoint(table.get(base, ())) for base in _bases(a))


def are_synonyms(a: str, b: str) -> bool:
    """Two words sharing a WordNet synset, also through an ending ("purchased" / "bought" is not one:
    irregular forms stay apart)."""
    table = senses()
    right = set().union(*(table.get(base, frozenset()) for base in _bases(b)))
    return bool(right) and any(not right.isdisjoint(table.get(base, ())) for base in _bases(a))


def load() -> None:
    """Read WordNet now (about 2 s), not on the first request that needs an opposite."""
    _opposite_table()


@cache
def _opposite_table() -> dict[str, frozenset[str]]:
    table = dict(antonyms())
    for word, others in _opposites(_DIRECTION_PAIRS).items():
        table[word] = table.get(word, frozenset()) | others
    return table


# Prepositions that give a relation a direction: swapping the words around them reverses the question.
DIRECTIONAL = frozenset({"to", "from", "into", "than", "vs", "versus", "over", "against", "onto", "towards"})

QUESTION_WORDS = {
    "what": "what",
    "which": "what",
    "who": "who",
    "whom": "who",
    "whose": "who",
    "when": "when",
    "where": "where",
    "why": "why",
    "how": "how",
}

_FUNCTION_WORDS = """
a an the my your our their his her its this that these those some any i me we us you it they them he she
is are am was were be been being do does did done have has had having can could would should will shall may
might must to of for in on at by with from about as into onto and or but if so than then there here
what which who whom whose when where why how whether get got getting go going one much many need
needs must
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_FILLERS = """
hi hello hey hiya team there folks guys everyone okay ok so please pls plz thanks thank cheers just quick
question um uh erm well actually basically really sorry excuse wondering wonder help urgent asap lol btw
anyway right now tell know idea anyone somebody someone hopefully kindly yes yeah advance bother
silly hope possible chance apologies mind er erm like many usually generally typically exactly
"""
FILLERS = frozenset(_FILLERS.split()) | FUNCTION_WORDS
