"""Numbers, units, times and dates read out of tokens, normalised so that equal amounts compare equal.

"23kg" and "23 kg", "four hours" and "4 hrs", "2 hours" and "120 minutes", "9am" and "9:00 am" are the same
amount; "3" and "5", "9:15" and "9:45", "5 miles" and "5 km", "Monday" and "Tuesday" are not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from precog.gateway.guard.text import Token, is_ordinal_word, number_word_value

# unit word -> (dimension, factor to the dimension's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("duration", 1.0)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), ("duration", 60.0)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), ("duration", 3600.0)),
    **dict.fromkeys(("day", "days"), ("duration", 86400.0)),
    **dict.fromkeys(("week", "weeks", "wk", "wks"), ("duration", 604800.0)),
    **dict.fromkeys(("month", "months"), ("duration", 2629800.0)),
    **dict.fromkeys(("year", "years", "yr", "yrs"), ("duration", 31557600.0)),
    **dict.fromkeys(("mg", "milligram", "milligrams"), ("mass", 0.001)),
    **dict.fromkeys(("g", "gram", "grams"), ("mass", 1.0)),
    **dict.fromkeys(("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), ("mass", 1000.0)),
    **dict.fromkeys(("lb", "lbs"), ("mass", 453.592)),
    **dict.fromkeys(("ml", "millilitre", "millilitres", "milliliter", "milliliters"), ("volume", 0.001)),
    **dict.fromkeys(("l", "litre", "litres", "liter", "liters"), ("volume", 1.0)),
    **dict.fromkeys(("cm", "centimetre", "centimetres"), ("length", 0.01)),
    **dict.fromkeys(("m", "metre", "metres", "meter", "meters"), ("length", 1.0)),
    **dict.fromkeys(("km", "kms", "kilometre", "kilometres", "kilometer", "kilometers"), ("length", 1000.0)),
    **dict.fromkeys(("mile", "miles", "mi"), ("length", 1609.34)),
    **dict.fromkeys(("%", "percent", "per cent"), ("percent", 1.0)),
    **dict.fromkeys(("gb", "gigabyte", "gigabytes"), ("data", 1e9)),
    **dict.fromkeys(("mb", "megabyte", "megabytes"), ("data", 1e6)),
    **dict.fromkeys(("tb", "terabyte", "terabytes"), ("data", 1e12)),
}
_MULTIPLIERS = {"k": 1e3, "bn": 1e9, "million": 1e6, "thousand": 1e3, "hundred": 1e2}
_ORDINAL_SUFFIX = ("st", "nd", "rd", "th")
_CURRENCY = {"£": "GBP", "$": "USD", "€": "EUR"}
_CURRENCY_WORDS = {"pound": "GBP", "pounds": "GBP", "quid": "GBP", "dollars": "USD", "euros": "EUR"}

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_ABBREVIATIONS = {m[:3]: m for m in _MONTHS if m != "may"} | {"sept": "september"}
_RELATIVE_DAYS = (
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "weekend",
    "weekday",
    "weekdays",
    "weekends",
    "midnight",
    "noon",
    "midday",
)
_DAY_TERMS = _WEEKDAYS + tuple(term.removesuffix("s") for term in _RELATIVE_DAYS)
_NUMBER_BODY = re.compile(r"^([£$€]?)(\d[\d,]*(?:\.\d+)?)([^\W\d_]*|%)$")
_TIME_BODY = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?(am|pm)?$")


@dataclass(frozen=True, slots=True)
class Quantity:
    """An amount in its dimension's base unit ("duration" in seconds, "money:GBP" in pounds)."""

    dimension: str
    value: float
    text: str
    written: float | None = None  # the number as written, before any unit conversion; None for dates


def _parse_time(norm: str) -> list[Quantity]:
    match = _TIME_BODY.match(norm)
    if match is None:
        return []
    hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    # Compared on a 12-hour dial, since "9:15" may lack "am" on one side; am/pm is its own term, compared
    # only when both sides give it.
    found = [Quantity("clock", float((hour % 12) * 60 + minute), norm, hour + minute / 100)]
    if meridiem is not None:
        found.append(Quantity("meridiem", float(meridiem == "pm"), norm))
    return found


def _date_term(tokens: Sequence[Token], i: int) -> Quantity | None:
    norm = tokens[i].norm
    if norm in _WEEKDAYS or norm in _RELATIVE_DAYS:
        return Quantity("date", float(_DAY_TERMS.index(norm.removesuffix("s"))), norm)
    month = _MONTH_ABBREVIATIONS.get(norm, norm)
    if month in _MONTHS and (month != "may" or _next_to_number(tokens, i)):
        return Quantity("month", float(_MONTHS.index(month) + 1), norm)
    return None


def _next_to_number(tokens: Sequence[Token], i: int) -> bool:
    return any(0 <= j < len(tokens) and tokens[j].kind == "number" for j in (i - 1, i + 1))


def _unit_after(tokens: Sequence[Token], i: int) -> tuple[str, float] | None:
    if i + 1 < len(tokens) and tokens[i + 1].kind == "word":
        return _UNITS.get(tokens[i + 1].norm)
    return None


def _spelled_number(tokens: Sequence[Token], i: int) -> tuple[float, int]:
    """Value of the run of number words starting at i ("twenty five", "three hundred") and its length."""
    total, current, j = 0.0, 0.0, i
    while j < len(tokens) and tokens[j].kind == "number" and not tokens[j].norm[0].isdigit():
        value = float(number_word_value(tokens[j].norm) or 0)
        if tokens[j].norm in _MULTIPLIERS:
            current = max(current, 1.0) * _MULTIPLIERS[tokens[j].norm]
            if value >= 1000:
                total, current = total + current, 0.0
        else:
            current += value
        j += 1
    return total + current, j - i


def _numeric(norm: str) -> tuple[str, float, str] | None:
    match = _NUMBER_BODY.match(norm)
    if match is None:
        return None
    currency, digits, suffix = match.groups()
    return currency, float(digits.replace(",", "")), suffix


def extract_quantities(tokens: Sequence[Token]) -> list[Quantity]:
    """Every amount, clock time and date term in `tokens`, in order."""
    found: list[Quantity] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        step = 1
        if token.kind == "time":
            found += _parse_time(token.norm)
        elif token.kind == "number":
            if token.norm[0].isdigit() or token.norm[0] in _CURRENCY:
                numeric = _numeric(token.norm)
                if numeric is None:
                    i += 1
                    continue
                currency, value, suffix = numeric
            else:
                value, step = _spelled_number(tokens, i)
                currency, suffix = "", ""
            found.append(_with_unit(tokens, i + step - 1, currency, value, suffix, token.surface))
        else:
            date = _date_term(tokens, i)
            if date is not None:
                found.append(date)
        i += step
    return found


def _with_unit(
    tokens: Sequence[Token], last: int, currency: str, value: float, suffix: str, text: str
) -> Quantity:
    if suffix in _ORDINAL_SUFFIX or (not suffix and is_ordinal_word(tokens[last].norm)):
        return Quantity("ordinal", value, text, value)
    if suffix in _MULTIPLIERS:
        value, suffix = value * _MULTIPLIERS[suffix], ""
    if currency:
        if suffix == "m":
            value, suffix = value * 1e6, ""
        return Quantity(f"money:{_CURRENCY[currency]}", value, text, value)
    unit = _UNITS.get(suffix) if suffix else _unit_after(tokens, last)
    if unit is None and last + 1 < len(tokens) and tokens[last + 1].norm in _CURRENCY_WORDS:
        return Quantity(f"money:{_CURRENCY_WORDS[tokens[last + 1].norm]}", value, text, value)
    if unit is None:
        return Quantity("count" if not suffix else f"count:{suffix}", value, text, value)
    dimension, factor = unit
    if not suffix:
        text = f"{text} {tokens[last + 1].surface}"
    return Quantity(dimension, value * factor, text, value)


def quantity_mismatch(a: Sequence[Quantity], b: Sequence[Quantity]) -> str | None:
    """Why the amounts on the two sides differ ("3 vs 5"), or None when both name the same amounts.

    Only dimensions present on both sides are compared: "one egg" against "an egg" is not a mismatch,
    but "one egg" against "three eggs" is.
    """
    shared = {q.dimension for q in a} & {q.dimension for q in b}
    for dimension in sorted(shared):
        left = Counter(round(q.value, 6) for q in a if q.dimension == dimension)
        right = Counter(round(q.value, 6) for q in b if q.dimension == dimension)
        if left != right:
            left_text = ", ".join(q.text for q in a if q.dimension == dimension)
            right_text = ", ".join(q.text for q in b if q.dimension == dimension)
            return f"{dimension} mismatch: {left_text} vs {right_text}"
    return None


def written_number_mismatch(a: Sequence[Quantity], b: Sequence[Quantity]) -> str | None:
    """Numbers on both sides that are not the same numbers, whatever their units ("first 6 weeks" vs
    "weeks 10 to 39"); "2kg" and "2 kilo", "7am" and "seven", "2 hours" and "120 minutes" agree."""
    converted_a = {(q.dimension, round(q.value, 6)) for q in a}
    converted_b = {(q.dimension, round(q.value, 6)) for q in b}
    rest_a = [q for q in a if q.written is not None and (q.dimension, round(q.value, 6)) not in converted_b]
    rest_b = [q for q in b if q.written is not None and (q.dimension, round(q.value, 6)) not in converted_a]
    left = {round(q.written, 6) for q in rest_a if q.written is not None}
    right = {round(q.written, 6) for q in rest_b if q.written is not None}
    if left and right and left != right:
        return f"number mismatch: {', '.join(q.text for q in rest_a)} vs {', '.join(q.text for q in rest_b)}"
    return None


def unpaired_dimensions(a: Sequence[Quantity], b: Sequence[Quantity]) -> set[str]:
    """Dimensions that only one side mentions: a hint, weaker than a mismatch ("at 60" vs "when I retire")."""
    return {q.dimension for q in a} ^ {q.dimension for q in b}
