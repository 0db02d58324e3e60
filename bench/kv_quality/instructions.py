"""Multi-instruction following under compression (The Pitfalls of KV Cache Compression, arXiv 2510.00231):
several instructions in the system prompt and one marked `<kv-protect>` in the user message, then a long
document, then a request that needs every instruction; each is checked in the output.

SmolLM2-135M follows no IFEval-style format instruction (uppercase, "end with DONE", "wrap in quotes":
0 of 10 uncompressed when this harness was written), so the instructions here are ones it does follow
uncompressed: who it is, where it is from, a password, and a colour the user asks it to mention. What
is measured is whether compression makes it drop them, with and without the protection.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from backend.server.prompts import chat_prompt
from backend.server.protection import ProtectedPrompt
from backend.server.protocol import ChatMessage

PERSONAS = [
    ("Zorblax", "Mars", "tulip", "teal"),
    ("Quillon", "Neptune", "walnut", "magenta"),
    ("Brindle", "Pluto", "saffron", "crimson"),
    ("Vexmor", "Jupiter", "pebble", "violet"),
]
DOCUMENTS = [
    "Tides are caused by the gravity of the Moon and the Sun. The Moon pulls the ocean toward it, making a "
    "bulge of water. As the Earth turns, places pass through the bulges, so most coasts see two high tides "
    "and two low tides each day. Spring tides happen when the Sun and Moon line up. ",
    "Bread rises because yeast eats sugar and releases carbon dioxide. The gas is trapped by gluten, a "
    "stretchy network of proteins formed when flour is kneaded with water. Baking sets the network and "
    "kills the yeast, leaving a soft crumb full of small holes. ",
]


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
    for i in range(count):
        name, place, password, colour = PERSONAS[i % len(PERSONAS)]
        paragraph = DOCUMENTS[i % len(DOCUMENTS)]
        repeats = max(1, document_tokens // len(tokenizer.encode(paragraph)))
        system = f"You are {name}, a robot from {place}. The password is {password}."
        user = (
            f"<kv-protect>In every answer, mention that your favourite colour is {colour}.</kv-protect>\n\n"
            f"{paragraph * repeats}\n\nIntroduce yourself: your name, where you are from, the password and "
            "your favourite colour."
        )
        messages = [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]
        checks = {"name": name, "origin": place, "password": password, "colour (user, marked)": colour}
        cases.append(InstructionCase(chat_prompt(tokenizer, messages), checks))
    return cases


def followed(text: str, case: InstructionCase) -> dict[str, bool]:
    """Per instruction: whether its word appears in the completion (case-insensitive)."""
    lower = text.lower()
    return {instruction: word.lower() in lower for instruction, word in case.checks.items()}
