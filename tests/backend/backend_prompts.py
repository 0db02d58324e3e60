"""Chat prompts the backend suites share: short, varied, and answered at length by SmolLM2."""

from __future__ import annotations

QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in simple terms.",
    "Write a short poem about the ocean.",
    "How do I make a cup of tea?",
    "What are the benefits of regular exercise?",
    "Describe the water cycle.",
    "Give me three tips for learning a new language.",
    "What is machine learning?",
    "Why is the sky blue?",
    "Tell me a fun fact about octopuses.",
    "How does a bicycle stay upright?",
    "What causes the seasons on Earth?",
    "Summarise the plot of Romeo and Juliet.",
    "What is the difference between weather and climate?",
    "How do vaccines work?",
    "Suggest a healthy breakfast.",
    "What is a black hole?",
    "Explain what a computer programme is to a child.",
    "List some uses of electricity at home.",
    "Why do leaves change colour in autumn?",
]


def chat_prompt_ids(tokenizer, question: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The model's chat template around one user question, ready for the assistant's answer."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer.encode(text))
