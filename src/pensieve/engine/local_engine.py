"""LocalEngine: the async Engine over one GGUF model served by a continuous-batching worker process.

The server process keeps only the model's vocabulary (a few MB): it renders chat prompts, tokenizes,
checks the context window and turns the worker's token ids back into text (UTF-8 assembly, stop
sequences, edge whitespace). The worker process holds the weights and runs the batching scheduler
(see `scheduler.py`); many requests decode together there. `worker_protocol` holds what the two
exchange. Closing a request's generator (client disconnect, stop sequence seen) cancels its sequence
in the worker within a step. Everything here runs in the server process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from pensieve.engine.chat_template import choose_chat_format, looks_instruction_tuned, render_chat_prompt
from pensieve.engine.llamacpp.grammar import GrammarError, generation_failure, grammar_for
from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.llamacpp.vocab import LlamaVocab
from pensieve.engine.memory import release_free_heap
from pensieve.engine.prompt_scores import PromptScores, generated_logprob
from pensieve.engine.registry import ModelInfo
from pensieve.engine.request_checks import checked_token_ids, completion_budget
from pensieve.engine.text import (
    ConfidenceWindow,
    EdgeWhitespaceTrimmer,
    StopSequenceFilter,
    Utf8Assembler,
    aligned_logprobs,
)
from pensieve.engine.tool_prompt import guarded, local_tool_request, takes_tools
from pensieve.engine.worker_client import WorkerClient
from pensieve.engine.worker_protocol import DoneEvent, Job, PromptEvent, WorkerFacts
from pensieve.engine_api import EngineStats, FinishReason, GenerationChunk, GenerationRequest, TokenLogprob, Usage
from pensieve.errors import EngineError, InvalidRequestError, RateLimitedError

logger = logging.getLogger(__name__)

# Weight of the newest run in the moving averages of speed and service time.
_EWMA_WEIGHT = 0.3
_TOKENIZED_CACHE_SIZE = 8
# Before the first request finishes there is no service time to go by; assume a modest two seconds.
_ASSUMED_SERVICE_SECONDS = 2.0


@dataclass(frozen=True)
class PreparedPrompt:
    """A request turned into tokens, with its effective stop sequences and token budget."""

    tokens: list[int]
    stop: tuple[str, ...]
    max_tokens: int
    is_chat: bool


class LocalEngine:
    """Engine implementation for a GGUF model run by llama.cpp in a supervised worker process."""

    def __init__(
        self,
        info: ModelInfo,
        vocab: LlamaVocab,
        worker: WorkerClient,
        chat_format: str,
        *,
        default_max_tokens: int = 0,
        max_queue: int = 64,
    ) -> None:
        self.info = info
        self._vocab = vocab
        self.worker = worker
        self.chat_format = chat_format
        self.native_tools = chat_format == "template" and takes_tools(info.chat_template)  # see tool_prompt.py
        self._default_max_tokens = default_max_tokens
        self._max_queue = max_queue
        self._stats = EngineStats(model=info.id, parallel=worker.facts.n_parallel)
        self._tokenized: dict[object, tuple[list[int], tuple[str, ...]]] = {}
        self._closed = False
        self.loaded_at = time.time()
        self.last_used = time.monotonic()

    @classmethod
    async def load(
        cls,
        info: ModelInfo,
        config: LlamaConfig,
        *,
        chat_format: str = "auto",
        default_max_tokens: int = 0,
        max_queue: int = 64,
        log_level: str = "info",
    ) -> LocalEngine:
        """Read the vocabulary here and start the worker process that loads the weights (about a second)."""
        vocab = await asyncio.to_thread(LlamaVocab.load, info.path)
        try:
            worker = await WorkerClient.start(info.id, info.path, config, log_level)
        except BaseException:
            vocab.close()
            raise
        tuned = looks_instruction_tuned(info.name, info.id)
        resolved = choose_chat_format(
            chat_format,
            has_template=info.has_chat_template,
            architecture=info.architecture,
            instruction_tuned=tuned,
        )
        if resolved == "dialogue":
            # Found once, off the event loop: the transcript format bans them as an answer's first token.
            await asyncio.to_thread(lambda: vocab.line_break_tokens)
        facts = worker.facts
        logger.info(
            "loaded model %s in worker pid %s (context %d, %d parallel sequences, %d KV cells, chat format %s)",
            info.id,
            worker.pid,
            facts.window,
            facts.n_parallel,
            facts.kv_size,
            resolved,
        )
        return cls(info, vocab, worker, resolved, default_max_tokens=default_max_tokens, max_queue=max_queue)

    # --- Engine protocol ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The model's id (file stem)."""
        return self.info.id

    @property
    def context_length(self) -> int:
        """Tokens one request may use (prompt + completion)."""
        return self.worker.facts.window

    @property
    def vocab(self) -> LlamaVocab:
        """The model's vocabulary (tokenizer and special tokens), kept in this process."""
        return self._vocab

    @property
    def alive(self) -> bool:
        """False once the worker process has died (the pool then starts a new one on the next request)."""
        return self.worker.alive and not self._closed

    @property
    def pid(self) -> int | None:
        """The worker process's id (None once it has exited)."""
        return self.worker.pid

    @property
    def facts(self) -> WorkerFacts:
        """What the worker reported when it loaded the model: window, parallel sequences, KV cells."""
        return self.worker.facts

    @property
    def kv_cells_in_use(self) -> int:
        """KV cache cells the worker's sequences hold now (from its last step report)."""
        return self.worker.kv_cells

    def count_prompt_tokens_now(self, request: GenerationRequest) -> int:
        """Tokens in the formatted prompt of `request`, counted in this thread (call it off the event loop)."""
        return len(self._tokenize_request(local_tool_request(request, native=self.native_tools))[0])

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens in the formatted prompt of `request`."""
        request = local_tool_request(request, native=self.native_tools)
        return len((await self.prepare(request, check_context=False)).tokens)

    async def prepare(self, request: GenerationRequest, *, check_context: bool = True) -> PreparedPrompt:
        """Format and tokenize `request`, and check that it fits the context window."""
        key = (request.messages, request.prompt, json.dumps(request.tools))  # tools: a native template's
        cached = self._tokenized.get(key)
        if cached is None:
            cached = await asyncio.to_thread(self._tokenize_request, request)
            # The burst controller counts a prompt's tokens just before the same prompt is generated:
            # remembering the last few tokenizations saves doing a long prompt twice.
            self._tokenized[key] = cached
            while len(self._tokenized) > _TOKENIZED_CACHE_SIZE:
                self._tokenized.pop(next(iter(self._tokenized)))
        prompt_tokens, format_stops = cached
        if not prompt_tokens:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        max_tokens = completion_budget(
            n_ctx=self.context_length,
            prompt_tokens=len(prompt_tokens),
            requested=request.params.max_tokens,
            default=self._default_max_tokens,
            chat=request.is_chat,
            check_context=check_context,
        )
        stops = tuple(dict.fromkeys((*request.params.stop, *format_stops)))
        return PreparedPrompt(prompt_tokens, stops, max_tokens, request.is_chat)

    def _tokenize_request(self, request: GenerationRequest) -> tuple[list[int], tuple[str, ...]]:
        model = self._vocab
        if request.messages is not None:
            messages, tools = guarded(request, model.special_guard.neutralise)  # typed markers stay text
            chat = render_chat_prompt(
                messages,
                tools=tools,
                chat_format=self.chat_format,
                template=self.info.chat_template,
                bos_token=model.bos_text,
                eos_token=model.eos_text,
            )
            # The rendered prompt already holds BOS and the turn markers as text.
            return model.tokenize(chat.text, add_special=False, parse_special=True), chat.stop
        if isinstance(request.prompt, tuple):
            return checked_token_ids(request.prompt, model.n_vocab), ()
        return model.tokenize(request.prompt or "", add_special=True, parse_special=True), ()

    def _job(self, prepared: PreparedPrompt, request: GenerationRequest) -> Job:
        params = request.params
        outside = [token for token, _ in params.logit_bias if not 0 <= token < self._vocab.n_vocab]
        if outside:
            # llama.cpp's logit-bias sampler trusts its ids: an id past the vocabulary must never reach it.
            raise InvalidRequestError(
                f"logit_bias token id {outside[0]} is outside the model's vocabulary (0..{self._vocab.n_vocab - 1}).",
                param="logit_bias",
            )
        param = "grammar" if params.grammar is not None else "response_format"
        try:
            grammar = grammar_for(params.response_format, params.grammar)
        except GrammarError as exc:
            raise InvalidRequestError(f"Invalid {param}: {exc}.", param=param) from exc
        first_free = prepared.is_chat and grammar is None  # an answer must not end before it starts
        return Job(
            rid=0,
            prompt=prepared.tokens,
            params=params,
            max_tokens=prepared.max_tokens,
            forbid_eog_first=first_free,
            # The transcript format's turn ends at a line break ("\nUser:"): one at once is an empty answer.
            ban_first=self._vocab.line_break_tokens if first_free and self.chat_format == "dialogue" else (),
            top_logprobs=params.top_logprobs if params.logprobs else -1,
            confidence_tokens=ConfidenceWindow.measured_tokens(request.confidence_tokens),
            grammar=grammar,
            cache_prompt=request.cache_prompt and not request.score_prompt,
            cache_partition=request.cache_partition,
            score_prompt=params.top_logprobs if request.score_prompt else -1,
            speculative=request.speculative,
        )

    def _check_queue(self) -> None:
        waiting = max(0, self.worker.in_flight - self.worker.facts.n_parallel)
        if waiting >= self._max_queue:
            wait = self._estimated_wait()
            raise RateLimitedError(
                f"Model '{self.model_id}' has {waiting} requests waiting (limit {self._max_queue}); retry shortly.",
                retry_after_seconds=max(1.0, wait),
            )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the completion; errors the client caused are raised before the first chunk."""
        if not self.alive:
            if self.worker.crash is not None:
                raise self.worker.dead_error()
            raise EngineError(self.worker.failure or f"Model '{self.model_id}' is unloading.")
        request = local_tool_request(request, native=self.native_tools)  # tools: a preamble or the template's
        prepared = await self.prepare(request)
        if prepared.max_tokens == 0 and not request.score_prompt:
            yield GenerationChunk("", "length", Usage(len(prepared.tokens), 0))  # nothing to compute
            return
        self._check_queue()
        self.last_used = time.monotonic()
        started = time.perf_counter()
        assembler = Utf8Assembler()
        stopper = StopSequenceFilter(prepared.stop)
        trimmer = EdgeWhitespaceTrimmer() if prepared.is_chat else None
        produced, logprob_sum, cached = 0, 0.0, 0
        finish: FinishReason = "length"
        done: DoneEvent | None = None
        job = self._job(prepared, request)
        per_token = request.params.logprobs
        pending: list[TokenLogprob] = []  # tokens whose text has not been emitted yet
        judged = ConfidenceWindow(request.confidence_tokens)
        scores = PromptScores(self._vocab, prepared.tokens)  # handed on with the first chunk, when asked for
        try:
            async with aclosing(self.worker.generate(job)) as events:
                async for event in events:
                    if isinstance(event, PromptEvent):
                        scores.add(event)
                        continue
                    if isinstance(event, DoneEvent):
                        done = event
                        break
                    produced += 1
                    cached = cached or event.cached_tokens
                    logprob_sum += event.logprob or 0.0
                    judged.push(piece := self._vocab.token_bytes(event.token), event.logprob)
                    if per_token:
                        pending.append(generated_logprob(self._vocab, event))
                    text, hit_stop = stopper.push(assembler.push(piece))
                    text = trimmer.push(text) if trimmer else text
                    if text:
                        yield GenerationChunk(
                            text,
                            logprobs=aligned_logprobs(pending, text, first=produced == len(pending)),
                            confidence_logprobs=judged.take(),
                            prompt_logprobs=scores.take() if request.score_prompt else (),
                        )
                        pending = []
                    if hit_stop:
                        finish = "stop"
                        break  # closing the event stream cancels the sequence in the worker
        finally:
            self._record(produced, time.perf_counter() - started)
        if done is not None:
            if done.finish == "error":
                raise generation_failure(done.error, grammar=job.grammar)
            finish = "stop" if done.finish == "stop" else "length"
            tail, hit_stop = stopper.push(assembler.flush())
            if not hit_stop:
                tail += stopper.flush()
            tail = trimmer.push(tail) if trimmer else tail
            if tail:
                prompt_entries = scores.take() if request.score_prompt else ()
                yield GenerationChunk(
                    tail, logprobs=tuple(pending), confidence_logprobs=judged.take(), prompt_logprobs=prompt_entries
                )
            finish = "stop" if hit_stop else finish
        mean_logprob = logprob_sum / produced if request.params.logprobs and produced else None
        usage = Usage(len(prepared.tokens), produced, done.cached_tokens if done is not None else cached)
        # With nothing generated (max_tokens 0), the scored prompt comes with this last chunk.
        prompt_entries = scores.take() if request.score_prompt else ()
        yield GenerationChunk("", finish, usage, mean_logprob, (), judged.take(), prompt_entries)

    def _record(self, produced: int, seconds: float) -> None:
        stats = self._stats
        stats.requests_served += 1
        stats.tokens_generated += produced
        speed = produced / seconds if seconds > 0 and produced else None

        def blend(old: float | None, new: float) -> float:
            return new if old is None else old + _EWMA_WEIGHT * (new - old)

        stats.recent_service_seconds = blend(stats.recent_service_seconds, seconds)
        if speed is not None:
            stats.recent_tokens_per_second = blend(stats.recent_tokens_per_second, speed)

    def _estimated_wait(self) -> float:
        """Seconds a new request would wait for a free sequence (0 while one is free)."""
        parallel = self.worker.facts.n_parallel
        in_flight = self.worker.in_flight
        if in_flight < parallel:
            return 0.0
        service = self._stats.recent_service_seconds or _ASSUMED_SERVICE_SECONDS
        # Requests ahead leave in waves of `parallel`; the new one starts when its wave's turn comes.
        return (1 + (in_flight - parallel) // parallel) * service

    def stats(self) -> EngineStats:
        """Queue depth, busy sequences, estimated wait, throughput figures."""
        stats, worker = self._stats, self.worker
        stats.busy_sequences = min(worker.in_flight, worker.facts.n_parallel)
        stats.queue_depth = max(0, worker.in_flight - worker.facts.n_parallel)
        stats.busy = worker.in_flight > 0
        stats.estimated_wait_seconds = self._estimated_wait()
        stats.extra["kv_cells_in_use"] = float(worker.kv_cells)
        stats.extra["kv_cells"] = float(worker.facts.kv_size)
        stats.extra["worker_pid"] = float(worker.pid or 0)
        return stats

    async def embed(self, texts: list[str | tuple[int, ...]]) -> tuple[list[list[float]], int]:
        """Embeddings of texts (or token-id lists) and the number of tokens they took.

        They wait in the model's queue like generations (429 when it is full), and megabytes of text are
        tokenized off the event loop so /health and the streams stay responsive.
        """
        self._check_queue()

        def tokenized() -> list[list[int]]:
            return [
                self._vocab.tokenize(text, add_special=True, parse_special=False)
                if isinstance(text, str)
                else checked_token_ids(text, self._vocab.n_vocab)
                for text in texts
            ]

        try:
            inputs = await asyncio.to_thread(tokenized)
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, param="input") from exc
        try:
            vectors = await self.worker.embed(inputs)
        except ValueError as exc:
            raise InvalidRequestError(f"Cannot embed this input: {exc}.", param="input") from exc
        return vectors, sum(len(tokens) for tokens in inputs)

    async def close(self) -> None:
        """Stop the worker process (its memory goes back to the OS) and free the vocabulary."""
        if self._closed:
            return
        self._closed = True
        await self.worker.close()
        self._vocab.close()
        release_free_heap()
