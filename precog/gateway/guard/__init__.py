"""The guard: rejects near matches that differ in numbers, dates, negation, names, units or direction; and
the answer tier's check that a stored answer answers a new question."""

from precog.gateway.guard.answers import AnswerVerdict, answer_check, uncovered
from precog.gateway.guard.guard import Guard, GuardVerdict

__all__ = ["AnswerVerdict", "Guard", "GuardVerdict", "answer_check", "uncovered"]
