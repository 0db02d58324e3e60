"""The engine: load the model, accept requests from any thread, and run scheduling steps.

Only the thread that calls `step()` touches scheduler and cache state. Other threads hand requests
and aborts over through a queue that the next step drains first, so an abort frees a sequence's
blocks before the next forward pass. Without an AsyncEngine driving the steps, `generate` and
`export_kv` step the engine themselves; with one, they submit and wait.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from precog.backend.compress import KVCompression
from precog.backend.config import EngineConfig
from precog.backend.engine.block_manager import BlockManager
from precog.backend.engine.detokenizer import IncrementalDetokenizer
from precog.backend.engine.kv import EngineParts, KVCounters, KVPolicies
from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.limits import resolve_limits
from precog.backend.engine.model_runner import ModelRunner
from precog.backend.engine.output_processor import OutputProcessor
from precog.backend.engine.request_check import RequestChecker, RequestError
from precog.backend.engine.sampler import sample
from precog.backend.engine.scheduler import ScheduledBatch, Scheduler
from precog.backend.engine.sequence import Request, Sequence, Status
from precog.backend.engine.throughput import ThroughputLog
from precog.backend.model.loader import load_model
from precog.backend.model.prepare import prepared_model_dir
from precog.backend.model.spec import ModelSpec
from precog.backend.outputs import Completion, EngineStats, TokenEvent
from precog.backend.reuse import KVReuse
from precog.backend.sampling_params import SamplingParams
from precog.backend.sparse import SparseAttention, SparseSettings, WorkingSetBudget
from precog.store import KVBlob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PromptPart:
    """More prompt tokens for a running request whose prompt was submitted incomplete."""

    request_id: str
    token_ids: list[int]
    final: bool


class Engine:
    """Our model, its paged KV cache, and the scheduler that batches every request through them.

    Public: tokenizer, model_name, max_model_len, eos_token_ids, thinkv (ThinKV's policy and
    per-request reports); generate, export_kv, stats; and, for drivers such as AsyncEngine,
    check_request, submit, extend_prompt, abort, step, has_work, wait_for_work.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        model_dir = self.config.model_dir or prepared_model_dir()
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        self.spec = spec = ModelSpec.from_dir(model_dir)
        self.max_model_len, num_blocks = resolve_limits(self.config, spec)
        self.device = self.config.torch_device()
        self.model = load_model(model_dir, spec, self.max_model_len, self.config.torch_dtype(), self.device)
        self.model_dir: Path = model_dir
        self.model_name = self.config.model_name or model_dir.name
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(model_dir)
        self.eos_token_ids = spec.eos_token_ids
        self.kv_cache = KVCache(
            spec,
            num_blocks,
            self.config.block_size,
            self.config.torch_dtype(),
            self.config.kv_dtype,
            self.device,
        )
        self.block_manager = BlockManager(
            num_blocks, self.config.block_size, self.config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, self.config.max_num_seqs, self.config.max_num_batched_tokens
        )
        self.runner = ModelRunner(self.model, self.kv_cache, self.config.attention_backend)
        self.sparse: SparseAttention | None = None
        if self.config.attention == "sparse":
            self.set_attention(self.config.sparse_settings())
        self.kv = KVPolicies(
            EngineParts(
                self.model, self.kv_cache, self.block_manager, self.tokenizer, model_dir, KVCounters()
            )
        )
        self.thinkv = self.kv.thinkv
        self.default_compression = self.config.kv_compression()
        self._checker = RequestChecker(
            spec,
            self.model_name,
            self.max_model_len,
            lambda compression: self.kv.check(compression, sparse=self.sparse is not None),
            self.device.type,
        )
        self._outputs = OutputProcessor(
            self.tokenizer, self.kv_cache, spec, self.model_name, self.max_model_len
        )
        self._throughput = ThroughputLog(self.config.log_interval_s)
        self._default_generator = torch.Generator().manual_seed(self.config.seed)
        self._inbox: queue.SimpleQueue[Request | PromptPart | str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._live_ids: set[str] = set()
        self._ids_lock = threading.Lock()
        self._seqs: dict[str, Sequence] = {}
        self._ids = itertools.count()
        self.driven_externally = False
        self.prompt_tokens = 0
        self.generation_tokens = 0
        log.info(
            "engine ready",
            extra={
                "model": self.model_name,
                "kv_blocks": num_blocks,
                "block_size": self.config.block_size,
                "device": str(self.device),
                "kv_dtype": self.config.kv_dtype,
                "kv_pool_bytes": self.kv_cache.nbytes,
                "max_model_len": self.max_model_len,
            },
        )

    def set_attention(self, sparse: SparseSettings | None) -> None:
        """Switch decode attention to sparse with these settings (a fresh fast tier), or back to dense
        (None); only while no request is queued or running. Page summaries are built from the cache as
        it is, so prefix-cached blocks stay usable."""
        if self.has_work():
            raise ValueError("attention can only be switched while the engine is idle")
        if sparse is not None and self.device.type != "cpu":
            raise ValueError(f"sparse attention runs on the cpu device only (this engine: {self.device})")
        if sparse is not None and self.kv_cache.packed:
            raise ValueError(
                f"sparse attention cannot serve packed KV pages (kv_dtype {self.kv_cache.kv_dtype})"
            )
        self.sparse = None if sparse is None else SparseAttention.over(sparse, self.kv_cache.plain_layers())
        self.runner.sparse = self.sparse
        batching = self.sparse is not None and self.sparse.settings.working_set_batching
        self.scheduler.working_set = WorkingSetBudget(self.sparse) if batching and self.sparse else None

    # ---- requests from any thread -------------------------------------------------------------
    def check_request(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        kv_prefix: KVBlob | None = None,
        compression: KVCompression | None = None,
        kv_reuse: KVReuse | None = None,
    ) -> None:
        """Raise RequestError (client-facing message, part to blame) if this request cannot be served."""
        self._checker.check_request(prompt_token_ids, params, kv_prefix, compression, kv_reuse)

    def submit(self, request: Request) -> None:
        """Queue a request (checked first; raises RequestError). Its callbacks run on the stepping thread."""
        self._checker.check_submission(request)
        with self._ids_lock:
            if request.request_id in self._live_ids:
                raise RequestError(f"request id {request.request_id!r} is already running")
            self._live_ids.add(request.request_id)
        self._inbox.put(request)
        self._wake.set()

    def extend_prompt(self, request_id: str, token_ids: list[int], final: bool = False) -> None:
        """Append the next ready part of a request submitted with prompt_complete=False; `final` ends
        the prompt, after which the first token is sampled. A part that breaks the request's limits
        fails that request (on_error); parts for unknown or finished requests are ignored."""
        self._inbox.put(PromptPart(request_id, list(token_ids), final))
        self._wake.set()

    def abort(self, request_id: str) -> None:
        """Stop a request and free its blocks before the next step; unknown or finished ids are ignored."""
        self._inbox.put(request_id)
        self._wake.set()

    def wake(self) -> None:
        """Release a driver blocked in wait_for_work (used to stop it)."""
        self._wake.set()

    def wait_for_work(self, timeout: float) -> None:
        """Block until a request or abort arrives (or timeout): what an idle driver loop waits on."""
        self._wake.wait(timeout)
        self._wake.clear()

    def has_work(self) -> bool:
        """Whether a step would do anything: queued, waiting or running requests."""
        return self.scheduler.has_work() or not self._inbox.empty()

    # ---- stepping (one thread) ----------------------------------------------------------------
    def step(self) -> list[TokenEvent]:
        """Run one scheduling step; return the token events it produced (also sent to the callbacks)."""
        self._drain_inbox()
        batch = self.scheduler.schedule()
        if not batch:
            return []
        sampled, logits = self.runner.run(batch)
        self.scheduler.update(batch)
        for seq in sampled:
            self._after_step(seq)
        tokens = sample(logits, sampled)
        events = [
            self._append(seq, token, row) for seq, token, row in zip(sampled, tokens, logits, strict=True)
        ]
        self._record(batch, len(sampled))
        return events

    def _after_step(self, seq: Sequence) -> None:
        """The KV method's hook; pages it rewrote in place get fresh sparse-attention summaries."""
        if seq.kv_state is not None and seq.kv_state.policy.after_step(seq) and self.sparse is not None:
            self.sparse.rewritten(seq.block_table, self.kv_cache.plain_layers())

    def _record(self, batch: ScheduledBatch, num_sampled: int) -> None:
        decode_tokens = sum(
            1
            for seq, n in zip(batch.seqs, batch.num_new, strict=True)
            if n == 1 and seq.num_computed_tokens - 1 >= seq.num_prompt_tokens
        )
        prefill_tokens = sum(batch.num_new) - decode_tokens
        self.prompt_tokens += prefill_tokens
        self.generation_tokens += num_sampled
        self._throughput.record(
            prefill_tokens,
            decode_tokens,
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_blocks_free=self.block_manager.num_free,
        )

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, str):
                self._abort_now(item)
                continue
            if isinstance(item, PromptPart):
                self._extend_now(item)
                continue
            params = item.params
            generator = None
            if not params.greedy:
                seed = params.seed
                if seed is None:
                    seed = int(torch.randint(0, 2**62, (1,), generator=self._default_generator).item())
                generator = torch.Generator().manual_seed(seed)
            seq = Sequence(item, IncrementalDetokenizer(self.tokenizer, params.stop), generator)
            seq.kv_state = self.kv.start(seq, self._compression_for(item))
            self._seqs[item.request_id] = seq
            self.scheduler.add(seq)

    def _compression_for(self, request: Request) -> KVCompression | None:
        """The request's own choice, else the engine default (never for a KV export or a KV reuse); None:
        keep all."""
        chosen = request.compression
        if chosen is None and request.on_kv is None and request.kv_reuse is None:
            chosen = self.default_compression
        return chosen if chosen is not None and chosen.active else None

    def _extend_now(self, part: PromptPart) -> None:
        seq = self._seqs.get(part.request_id)
        if seq is None or seq.status is Status.FINISHED:
            return
        try:
            if seq.prompt_complete:
                raise ValueError(f"the prompt of request {part.request_id!r} is already complete")
            self._checker.check([*seq.request.prompt_token_ids, *part.token_ids], seq.params)
        except ValueError as exc:
            self._fail(seq, exc)
            return
        seq.extend_prompt(part.token_ids, part.final)

    def _abort_now(self, request_id: str) -> None:
        seq = self._seqs.get(request_id)
        if seq is None or seq.status is Status.FINISHED:
            return
        seq.finish_reason = "abort"
        self._finish(seq)

    def _append(self, seq: Sequence, token: int, logits: torch.Tensor) -> TokenEvent:
        request = seq.request
        if request.on_logits is not None:
            request.on_logits(logits)
        done = len(seq.output_token_ids)
        if request.forced_token_ids is not None and done < len(request.forced_token_ids):
            token = request.forced_token_ids[done]
        event = self._outputs.append(seq, token, logits)
        if event.finish_reason is not None:
            self._finish(seq)  # blocks are free before the caller sees the last token
        if seq.request.on_event is not None:
            seq.request.on_event(event)
        return event

    def _finish(self, seq: Sequence) -> None:
        self.scheduler.remove(seq)
        del self._seqs[seq.request_id]
        with self._ids_lock:
            self._live_ids.discard(seq.request_id)
        if seq.request.on_finish is not None:
            seq.request.on_finish(seq.completion())

    def fail_all(self, error: BaseException) -> None:
        """Drop every queued and running request, freeing their blocks, and tell each caller why."""
        self._drain_inbox()
        for seq in list(self._seqs.values()):
            self._fail(seq, error)

    def _fail(self, seq: Sequence, error: BaseException) -> None:
        seq.finish_reason = "abort"
        self.scheduler.remove(seq)
        del self._seqs[seq.request_id]
        with self._ids_lock:
            self._live_ids.discard(seq.request_id)
        if seq.request.on_error is not None:
            seq.request.on_error(error)

    # ---- in-process use -------------------------------------------------------------------------
    def generate(
        self,
        prompts: Seq[str] | Seq[list[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
        compression: KVCompression | None = None,
        kv_reuse: Seq[KVReuse | None] | None = None,
    ) -> list[Completion]:
        """Complete every prompt (text or token ids), batched through the scheduler, in prompt order.

        `compression` applies to every prompt (None: the engine's default, `kv_compression_*` settings).
        `kv_reuse`, one per prompt (None: none), prefills that prompt from a similar prompt's KV.
        """
        if isinstance(prompts, str):
            raise TypeError("generate takes a list of prompts")
        all_params = (
            [params or SamplingParams()] * len(prompts) if not isinstance(params, Seq) else list(params)
        )
        if len(all_params) != len(prompts):
            raise ValueError(f"got {len(all_params)} sampling params for {len(prompts)} prompts")
        reuses = list(kv_reuse) if kv_reuse is not None else [None] * len(prompts)
        if len(reuses) != len(prompts):
            raise ValueError(f"got {len(reuses)} kv_reuse options for {len(prompts)} prompts")
        token_lists = [self.tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
        requests = [
            Request(f"generate-{next(self._ids)}", ids, p, compression=compression, kv_reuse=reuse)
            for ids, p, reuse in zip(token_lists, all_params, reuses, strict=True)
        ]
        for request in requests:
            self.check_request(
                request.prompt_token_ids, request.params, compression=compression, kv_reuse=request.kv_reuse
            )
        return self._run(requests)

    def export_kv(self, prompt_token_ids: list[int]) -> KVBlob:
        """Prefill the prompt and return its per-layer K (RoPE applied) and V as a KVBlob."""
        captured: list[KVBlob] = []
        request = Request(
            f"export-{next(self._ids)}",
            list(prompt_token_ids),
            SamplingParams(temperature=0.0, max_tokens=1),
            on_kv=captured.append,
        )
        self.check_request(request.prompt_token_ids, request.params)
        self._run([request])
        return captured[0]

    def _run(self, requests: list[Request]) -> list[Completion]:
        if not requests:
            return []
        results: dict[str, Completion] = {}
        errors: list[BaseException] = []
        done = threading.Event()

        def finished(completion: Completion) -> None:
            results[completion.request_id] = completion
            if len(results) == len(requests):
                done.set()

        for request in requests:
            request.on_finish = finished
            request.on_error = errors.append
            self.submit(request)
        if self.driven_externally:
            while not done.wait(0.1):
                if errors:
                    raise errors[0]
        else:
            try:
                while not done.is_set():
                    self.step()
            except BaseException as exc:
                self.fail_all(exc)
                raise
        if errors:
            raise errors[0]
        return [results[r.request_id] for r in requests]

    def stats(self) -> EngineStats:
        """A snapshot; safe to call from any thread."""
        bm = self.block_manager
        return EngineStats(
            waiting=len(self.scheduler.waiting) + self._inbox.qsize(),
            running=len(self.scheduler.running),
            kv_blocks_used=bm.num_blocks - bm.num_free,
            kv_blocks_free=bm.num_free,
            kv_blocks_total=bm.num_blocks,
            prefix_cache_queries=self.scheduler.prefix_cache_queries,
            prefix_cache_hits=self.scheduler.prefix_cache_hits,
            prompt_tokens=self.prompt_tokens,
            generation_tokens=self.generation_tokens,
            preemptions=self.scheduler.preemptions,
            kv_compressed_requests=self.kv.counters.compressed_requests,
            kv_tokens_evicted=self.kv.counters.tokens_evicted,
        )
