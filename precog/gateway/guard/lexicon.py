"""Closed word classes the typed checks rely on: negators, polar opposites, function words and fillers.

These are small general-English lists, not tuned to any data set. Anything they miss is left to the
classifier, which sees how much content changed and how far apart the changed words are.
"""

from __future__ import annotations

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

_OPPOSITE_PAIRS = """
accept decline, accept reject, accepted rejected, allow ban, allow forbid, allowed banned, allowed prohibited,
permitted prohibited, open closed, open shut, opening closing, include exclude, included excluded,
includes excludes, including excluding, add remove, add delete, added removed, eat avoid, use avoid,
start stop, start end, begin end, on off, in out, into out, up down, upload download, uploads downloads,
import export, increase decrease, increase reduce, raise lower, rise fall, buy sell, buying selling,
bought sold, lend borrow, deposit withdraw, credit debit, send receive, sent received, sending receiving,
arrive depart, arrival departure, arrivals departures, inbound outbound, incoming outgoing, before after,
earlier later, early late, earliest latest, first last, next last, next previous, more less, more fewer,
most least, maximum minimum, max min, bigger smaller, larger smaller, big small, large small, higher lower,
high low, highest lowest, above below, over under, longer shorter, long short, faster slower, fast slow,
quicker slower, cheaper dearer, cheap expensive, cheapest dearest, hot cold, warmer colder, heavier lighter,
heavy light, old new, older newer, oldest newest, young old, younger older, safe dangerous, true false,
right wrong, pass fail, win lose, won lost, join leave, enter exit, entry exit, login logout,
positive negative,
plus minus, gain lose, gain loss, profit loss, with without, for against, pros cons, benefits drawbacks,
advantages disadvantages, strengths weaknesses, best worst, better worse, good bad, easier harder, easy hard,
easy difficult, north south, east west, left right, top bottom, front back, inside outside, internal external,
public private, full empty, full part, domestic international, online offline, day night, morning evening,
summer winter, men women, man woman, male female, boys girls, adult child, adults children, employer employee,
buyer seller, landlord tenant, sender recipient, husband wife,
input output, inflow outflow, give take, giving taking, lending borrowing, charge refund,
increase cut, forward back, forwards backwards, upstairs downstairs, uphill downhill, push pull,
arriving leaving, always never, enable disable, upgrade downgrade, approve reject, approved rejected,
compulsory optional, mandatory optional, grant revoke, pause resume, busy quiet, spicy mild, cover exclude,
take avoid, allow block, increase less, increase lower, increase smaller, reduce more, reduce raise,
permit refuse, win draw, agree disagree, like hate, love hate, lock unlock, mount unmount, everyone nobody,
all none, everything nothing, pay receive, payer payee,
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


def opposite_words(word: str) -> frozenset[str]:
    """Polar opposites of `word`, also through a plural or tense ending ("increased" -> "decreased")."""
    found = OPPOSITES.get(word)
    if found is not None:
        return found
    for ending in ("s", "es", "ed", "d", "ing"):
        base = word.removesuffix(ending)
        if base != word and base in OPPOSITES:
            return frozenset(other + ending for other in OPPOSITES[base]) | OPPOSITES[base]
    return frozenset()


OPPOSITES = _opposites(_OPPOSITE_PAIRS)

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
