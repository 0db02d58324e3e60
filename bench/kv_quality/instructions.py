"""Multi-instruction following under compression (The Pitfalls of KV Cache Compression, arXiv 2510.00231):
several instructions in the system prompt and one marked `<kv-protect>` in the user message, then a long
document, then a request that needs every instruction; each is checked in the output.

SmolLM2-135M follows no IFEval-style format instruction (uppercase, "end with DONE", "wrap in quotes":
0 of 10 uncompressed when this harness was written), so the instructions here are ones it can follow:
who it is, where it is from and a password (system prompt), and the user's name, given in a marked
sentence of the user message. Even these it follows only in part uncompressed (about a third), so the
full cache's rate, measured in the same run, is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from precog.backend.server.prompts import chat_prompt
from precog.backend.server.protection import ProtectedPrompt
from precog.backend.server.protocol import ChatMessage

PERSONAS = [
    ("Zorblax", "Mars", "tulip", "Alice"),
    ("Zimbor", "Venus", "daisy", "Bob"),
    ("Blorptax", "Jupiter", "cedar", "Dave"),
    ("Kraxon", "Saturn", "maple", "Carol"),
    ("Zentar", "Pluto", "lotus", "Erin"),
    ("Gorlax", "Neptune", "acorn", "Frank"),
]
DOCUMENT = (
    "Tides are caused by the gravity of the Moon and the Sun. The Moon pulls the ocean toward it, making a "
    "bulge of water. As the Earth turns, places pass through the bulges, so most coasts see two high tides "
    "and two low tides each day. Spring tides happen when the Sun and Moon line up. "
)
QUESTION = "What is your name, where are you from, what is the password, and what is my name?"


@dataclass(frozen=True, slots=True)
class InstructionCase:
    """A templated chat (with its protected token ranges) and, per instruction, the word that shows it."""

    prompt: ProtectedPrompt
    checks: dict[str, str]


def instruction_cases(
    tokenizer: PreTrainedTokenizerBase, document_tokens: int, count: int
) -> list[InstructionCase]:
    """count chats, each with a document of about document_tokens tokens between the instructions and the
    request."""
    cases = []
    repeats = max(1, document_tokens // len(tokenizer.encode(DOCUMENT)))
    for i in range(count):
        name, place, password, user_name = PERSONAS[i % len(PERSONAS)]
        system = f"You are {name}, a robot from {place}. The password is {password}."
        user = f"<kv-protect>My name is {user_name}.</kv-protect>\n\n{DOCUMENT * repeats}\n\n{QUESTION}"
        messages = [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]
        checks = {"name": name, "origin": place, "password": password, "user's name (marked)": user_name}
        cases.append(InstructionCase(chat_prompt(tokenizer, messages), checks))
    return cases


def followed(text: str, case: InstructionCase) -> dict[str, bool]:
    """Per instruction: whether its word appears in the completion (case-insensitive)."""
    lower = text.lower()
    return {instruction: word.lower() in lower for instruction, word in case.checks.items()}
