"""From request bodies to prompt token ids and sampling parameters, refusing what cannot run.

The context check happens here, before anything reaches the engine, so an over-long request costs no
KV blocks and gets OpenAI's `context_length_exceeded` error.
"""

from __future__ import annotations

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from precog.backend import SamplingParams
from precog.backend.server.errors import bad_request, context_length_exceeded
from precog.backend.server.protection import ProtectedPrompt, locate, token_ranges, unmarked_messages
from precog.backend.server.protocol import MAX_CHOICES, ChatCompletionRequest, ChatMessage, CompletionRequest

_PARAMS = ("temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "logprobs")


def render_chat(
    tokenizer: PreTrainedTokenizerBase, messages: list[ChatMessage], add_generation_prompt: bool
) -> str:
    """The model's own chat template over the messages (system/developer both map to `system`)."""
    turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    try:
        text = tokenizer.apply_chat_template(
            turns, add_generation_prompt=add_generation_prompt, tokenize=False
        )
    except (TemplateError, ValueError) as exc:  # templates refuse some turn orders: the caller's input
        raise bad_request(
            f"The messages do not fit the model's chat template: {exc}", param="messages"
        ) from exc
    return str(text)


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Tokens of already-formatted text; special tokens come only from the text or the template."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def completion_prompts(tokenizer: PreTrainedTokenizerBase, body: CompletionRequest) -> list[list[int]]:
    """Token ids of each prompt of the request's batch (one for a single prompt)."""
    prompts = body.prompts()
    if len(prompts) * body.n > MAX_CHOICES:
        raise bad_request(
            f"{len(prompts)} prompts x n={body.n} asks for more than {MAX_CHOICES} choices.", param="n"
        )
    batch = []
    vocab = len(tokenizer)
    for i, prompt in enumerate(prompts):
        param = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
        ids = tokenize(tokenizer, prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise bad_request("The prompt must not be empty.", param=param)
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise bad_request(f"Token id {bad} is outside the vocabulary [0, {vocab}).", param=param)
        batch.append(ids)
    return batch


def chat_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: list[ChatMessage], add_generation_prompt: bool = True
) -> ProtectedPrompt:
    """The templated messages without their `<kv-protect>` markers, as tokens, with the token ranges
    KV compression must keep (see precog/backend/server/protection.py)."""
    try:
        plain, spans = unmarked_messages(messages)
    except ValueError as exc:
        raise bad_request(f"Bad protection marker in the messages: {exc}.", param="messages") from exc
    text = render_chat(tokenizer, plain, add_generation_prompt)
    ids, protected = token_ranges(tokenizer, text, locate(text, plain, spans))
    return ProtectedPrompt(text, ids, protected)


def sampling_params(
    body: CompletionRequest | ChatCompletionRequest, prompt_tokens: int, max_model_len: int
) -> SamplingParams:
    """OpenAI defaults (temperature 1, top_p 1); no max_tokens means "up to the context length"."""
    param = "messages" if isinstance(body, ChatCompletionRequest) else "prompt"
    if isinstance(body, ChatCompletionRequest):
        limit = body.output_limit()
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise bad_request("top_logprobs requires logprobs to be true.", param="top_logprobs")
    else:
        limit, logprobs = body.max_tokens, body.logprobs
    if prompt_tokens >= max_model_len or (limit is not None and prompt_tokens + limit > max_model_len):
        raise context_length_exceeded(max_model_len, prompt_tokens, limit, param)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    params = SamplingParams(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        seed=body.seed,
        max_tokens=limit if limit is not None else max_model_len - prompt_tokens,
        stop=stop,
        logprobs=logprobs,
        ignore_eos=body.ignore_eos,
    )
    try:
        params.validate()
    except ValueError as exc:
        message = str(exc)
        raise bad_request(message, param=next((f for f in _PARAMS if message.startswith(f)), None)) from exc
    return params
