"""Whether a request can be served by this model and engine; every refusal says why in client terms."""

from __future__ import annotations

from dataclasses import dataclass

from precog.backend.model.spec import ModelSpec
from precog.backend.reuse import KVReuse, check_reference
from precog.backend.sampling_params import SamplingParams
from precog.store import KVBlob


@dataclass(frozen=True, slots=True)
class RequestChecker:
    spec: ModelSpec
    model_name: str
    max_model_len: int

    def check(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        kv_prefix: KVBlob | None,
        kv_reuse: KVReuse | None = None,
    ) -> None:
        """Raise ValueError with a message a server can return as a 400."""
        params.validate()
        n = len(prompt_token_ids)
        if n == 0:
            raise ValueError("the prompt is empty")
        if any(not 0 <= t < self.spec.vocab_size for t in prompt_token_ids):
            raise ValueError(f"prompt token ids must be in [0, {self.spec.vocab_size})")
        if n + params.max_tokens > self.max_model_len:
            raise ValueError(
                f"this model's maximum context length is {self.max_model_len} tokens, but "
                f"{n + params.max_tokens} were requested ({n} in the prompt, {params.max_tokens} in the "
                "completion)"
            )
        if kv_prefix is not None:
            self._check_blob(kv_prefix, prompt_token_ids)
        if kv_reuse is not None:
            if kv_prefix is not None:
                raise ValueError("a request takes an exact KV prefix or a KV reuse reference, not both")
            if kv_reuse.reference.model != self.model_name:
                model = kv_reuse.reference.model
                raise ValueError(f"the reference KV blob is for model {model!r}, not {self.model_name!r}")
            check_reference(kv_reuse.reference, self.spec)

    def _check_blob(self, blob: KVBlob, prompt_token_ids: list[int]) -> None:
        if blob.model != self.model_name:
            raise ValueError(f"the KV blob is for model {blob.model!r}, not {self.model_name!r}")
        expected = (self.spec.num_kv_heads, len(blob.token_ids), self.spec.head_dim)
        if blob.num_layers != self.spec.num_layers or any(tuple(k.shape) != expected for k in blob.keys):
            raise ValueError(
                f"the KV blob's shape does not match this model ({self.spec.num_layers} layers of {expected})"
            )
        if prompt_token_ids[: len(blob.token_ids)] != blob.token_ids:
            raise ValueError("the KV blob's tokens are not a prefix of the prompt")
        theta = blob.rope.get("theta")
        if theta is not None and float(theta) != self.spec.rope_theta:
            raise ValueError(
                f"the KV blob was rotated with RoPE theta {theta}, this model uses {self.spec.rope_theta}"
            )
