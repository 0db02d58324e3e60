"""Whether a request can be served by this model and engine; every refusal says why in client terms, and
which part of the request is to blame, so a server names the offending field without checking again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from precog.backend.model.spec import ModelSpec
from precog.backend.reuse import KVReuse, check_reference
from precog.backend.sampling_params import SamplingParams
from precog.store import KVBlob

# The request's parts a refusal may blame; None: the prompt or the sampling parameters.
RequestPart = Literal["kv_prefix", "kv_reuse", "kv_compression"]


class RequestError(ValueError):
    """A request this engine cannot serve."""

    def __init__(self, message: str, part: RequestPart | None = None) -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True, slots=True)
class RequestChecker:
    spec: ModelSpec
    model_name: str
    max_model_len: int

    def check(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        try:
            params.validate()
        except ValueError as exc:
            raise RequestError(str(exc)) from exc
        n = len(prompt_token_ids)
        if n == 0:
            raise RequestError("the prompt is empty")
        if any(not 0 <= t < self.spec.vocab_size for t in prompt_token_ids):
            raise RequestError(f"prompt token ids must be in [0, {self.spec.vocab_size})")
        if n + params.max_tokens > self.max_model_len:
            raise RequestError(
                f"this model's maximum context length is {self.max_model_len} tokens, but "
                f"{n + params.max_tokens} were requested ({n} in the prompt, {params.max_tokens} in the "
                "completion)"
            )

    def check_kv(
        self, prompt_token_ids: list[int], kv_prefix: KVBlob | None, kv_reuse: KVReuse | None
    ) -> None:
        if kv_prefix is not None:
            self._check_blob(kv_prefix, prompt_token_ids)
        if kv_reuse is not None:
            if kv_prefix is not None:
                raise RequestError(
                    "a request takes an exact KV prefix or a KV reuse reference, not both", "kv_reuse"
                )
            if kv_reuse.reference.model != self.model_name:
                model = kv_reuse.reference.model
                raise RequestError(
                    f"the reference KV blob is for model {model!r}, not {self.model_name!r}", "kv_reuse"
                )
            try:
                check_reference(kv_reuse.reference, self.spec)
            except ValueError as exc:
                raise RequestError(str(exc), "kv_reuse") from exc

    def _check_blob(self, blob: KVBlob, prompt_token_ids: list[int]) -> None:
        if blob.model != self.model_name:
            raise RequestError(
                f"the KV blob is for model {blob.model!r}, not {self.model_name!r}", "kv_prefix"
            )
        expected = (self.spec.num_kv_heads, len(blob.token_ids), self.spec.head_dim)
        if blob.num_layers != self.spec.num_layers or any(tuple(k.shape) != expected for k in blob.keys):
            layers = self.spec.num_layers
            raise RequestError(
                f"the KV blob's shape does not match this model ({layers} layers of {expected})", "kv_prefix"
            )
        if prompt_token_ids[: len(blob.token_ids)] != blob.token_ids:
            raise RequestError("the KV blob's tokens are not a prefix of the prompt", "kv_prefix")
        theta = blob.rope.get("theta")
        if theta is not None and float(theta) != self.spec.rope_theta:
            raise RequestError(
                f"the KV blob was rotated with RoPE theta {theta}, this model uses {self.spec.rope_theta}",
                "kv_prefix",
            )
