"""The two conversations the pipeline sends for each question: a grounded one that produces the answer, and
the one a user of the chat app would have had, whose KV cache is captured."""

from __future__ import annotations

from collections.abc import Callable

from precompute.upstream import Completion

GROUNDING = "Answer the user's question using the document below. Be brief and factual.\n\nDocument:\n"


def answer_messages(system_prompt: str, chunk: str, question: str) -> list[dict[str, str]]:
    """The app's system prompt plus the chunk, so the answer is grounded in the text it was asked about."""
    system = f"{system_prompt}\n\n{GROUNDING}{chunk}" if system_prompt else f"{GROUNDING}{chunk}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def grounded_answer(
    chat: Callable[[list[dict[str, str]], float, int, int], Completion],
    system_prompt: str,
    chunk: str,
    question: str,
    max_tokens: int,
) -> tuple[Completion, int]:
    """Greedy answer within max_tokens, and the tokens spent on it; one retry with twice the budget when
    it was cut off. One still truncated comes back as is: the caller drops it (a partial answer is never
    stored, since the gateway would serve it as if it were whole)."""
    messages = answer_messages(system_prompt, chunk, question)
    completion = chat(messages, 0.0, max_tokens, 0)
    spent = completion.tokens
    if completion.truncated:
        completion = chat(messages, 0.0, 2 * max_tokens, 0)
        spent += completion.tokens
    return completion, spent


def exchange_messages(system_prompt: str, question: str, answer: str) -> list[dict[str, str]]:
    """What the gateway's client sends and gets back on a hit: this is the prefix a next turn continues."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
