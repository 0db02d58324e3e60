"""What happens to a sampled token: logprobs, text, the finish decision, and the event that reports it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.sequence import Sequence
from precog.backend.model.spec import ModelSpec
from precog.backend.outputs import FinishReason, TokenEvent, TokenLogprob, TopLogprob
from precog.store import KVBlob


@dataclass(slots=True)
class OutputProcessor:
    tokenizer: PreTrainedTokenizerBase
    kv_cache: KVCache
    spec: ModelSpec
    model_name: str
    max_model_len: int

    def append(self, seq: Sequence, token: int, logits: torch.Tensor) -> TokenEvent:
        """Add the token to seq; the event's finish_reason is set when seq is done."""
        params = seq.params
        if seq.request.on_kv is not None and not seq.output_token_ids:
            seq.request.on_kv(self._capture(seq))
        seq.token_ids.append(token)
        logprob = None
        if params.logprobs is not None:
            logprob = self._logprob(logits, token, params.logprobs)
            seq.logprobs.append(logprob)
        text = seq.detokenizer.add(token)
        reason: FinishReason | None = None
        if (token in self.spec.eos_token_ids and not params.ignore_eos) or seq.detokenizer.stopped:
            reason = "stop"
        elif len(seq.output_token_ids) >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            reason = "length"
        if reason is not None:
            text += seq.detokenizer.flush()
            seq.finish_reason = reason
        return TokenEvent(
            request_id=seq.request_id,
            token_id=token,
            text=text,
            logprob=logprob,
            finish_reason=reason,
            prompt_tokens=seq.num_prompt_tokens,
            completion_tokens=len(seq.output_token_ids),
            cached_tokens=seq.cached_tokens or 0,
        )

    def _capture(self, seq: Sequence) -> KVBlob:
        """The prompt's KV, read from seq's blocks right after its prefill completed."""
        keys, values = self.kv_cache.read(seq.block_table, seq.num_prompt_tokens)
        return KVBlob(
            model=self.model_name,
            token_ids=list(seq.request.prompt_token_ids),
            keys=[k.cpu() for k in keys],
            values=[v.cpu() for v in values],
            rope={"type": self.spec.rope_type, "theta": self.spec.rope_theta},
        )

    def _logprob(self, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        alternatives = []
        if top:
            best = torch.topk(logprobs, top)
            alternatives = [
                TopLogprob(int(t), self._text(int(t)), float(lp))
                for lp, t in zip(best.values, best.indices, strict=True)
            ]
        return TokenLogprob(token, self._text(token), float(logprobs[token]), alternatives)

    def _text(self, token: int) -> str:
        return str(self.tokenizer.decode([token]))
