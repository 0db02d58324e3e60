"""Whether a request can be served by this model and engine; every refusal says why in client terms, and
which part of the request is to blame, so a server names the offending field without checking again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from precog.backend.compress import KVCompression
from precog.backend.engine.sequence import Request
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
    check_policy: Callable[[KVCompression], None]  # whether this engine's KV policies can run the option
    device_type: str = "cpu"  # the engine's device ("cuda": no semantic KV reuse)

    def check_request(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        kv_prefix: KVBlob | None = None,
        compression: KVCompression | None = None,
        kv_reuse: KVReuse | None = None,
    ) -> None:
        """A request wrong in several parts is refused for the first of: prompt and sampling, compression
        settings, KV prefix, KV reuse."""
        self.check(prompt_token_ids, params)
        if compression is not None:
            try:
                compression.validate()
            except ValueError as exc:
                raise RequestError(str(exc), "kv_compression") from exc
        self.check_kv(prompt_token_ids, kv_prefix, kv_reuse)
        if compression is not None:
            if kv_reuse is not None and compression.active:
                raise RequestError(
                    "a request that reuses a similar prompt's KV cannot also compress it", "kv_reuse"
                )
            try:
                self.check_policy(compression)
            except ValueError as exc:
                raise RequestError(str(exc), "kv_compression") from exc

    def check_submission(self, request: Request) -> None:
        """The request's checks, and the combinations the engine cannot run together."""
        self.check_request(
            request.prompt_token_ids, request.params, request.kv_prefix, request.compression, request.kv_reuse
        )
        if request.on_kv is not None and request.compression is not None and request.compression.active:
            raise RequestError("a request that exports its prompt's KV cannot compress it")
        if request.on_kv is not None and request.kv_reuse is not None:
            raise RequestError("a request that exports its prompt's KV cannot reuse another prompt's KV")
        if not request.prompt_complete and request.kv_reuse is not None:
            raise RequestError("a request whose prompt arrives in parts cannot reuse another prompt's KV")
        if any(not 0 <= t < self.spec.vocab_size for t in request.forced_token_ids or []):
            raise RequestError(f"forced token ids must be in [0, {self.spec.vocab_size})")

    def check(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """The prompt and its sampling parameters (also each new part of a prompt sent in parts)."""
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
            if self.device_type != "cpu":
                raise RequestError(
                    f"kv_reuse runs on the cpu device only (this engine: {self.device_type})", "kv_reuse"
                )
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
