"""The guard: rejects near matches that differ in numbers, dates, negation, names, units or direction."""

from precog.gateway.guard.guard import Guard, GuardVerdict

__all__ = ["Guard", "GuardVerdict"]
