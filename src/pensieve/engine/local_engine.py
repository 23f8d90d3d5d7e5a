"""LocalEngine: the async Engine over one llama.cpp model, serving one request at a time.

The model lives on a dedicated thread (llama.cpp contexts are not thread-safe); requests queue on
that thread's FIFO executor, so the event loop never blocks. Tokens travel back to the event loop
through `call_soon_threadsafe`. Closing the async generator (client disconnect) sets a flag the worker
checks between tokens and between prompt batches, so the run stops within a token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pensieve.engine.chat_template import choose_chat_format, looks_instruction_tuned, render_chat_prompt
from pensieve.engine.llama_cpp_backend import LlamaConfig, LlamaCppModel, LlamaDecodeError
from pensieve.engine.registry import ModelInfo
from pensieve.engine.text import EdgeWhitespaceTrimmer, StopSequenceFilter, Utf8Assembler
from pensieve.engine.types import EngineStats, FinishReason, GenerationChunk, GenerationRequest, Usage
from pensieve.errors import ContextLengthExceededError, EngineError, InvalidRequestError

logger = logging.getLogger(__name__)

# Weight of the newest run in the moving averages of speed and service time.
_EWMA_WEIGHT = 0.3
_TOKENIZED_CACHE_SIZE = 8


@dataclass(frozen=True)
class PreparedPrompt:
    """A request turned into tokens, with its effective stop sequences and token budget."""

    tokens: list[int]
    stop: tuple[str, ...]
    max_tokens: int
    is_chat: bool


class LocalEngine:
    """Engine implementation for a GGUF model run in-process by llama.cpp."""

    def __init__(self, info: ModelInfo, model: LlamaCppModel, chat_format: str, default_max_tokens: int) -> None:
        self.info = info
        self._model = model
        self.chat_format = chat_format
        self._default_max_tokens = default_max_tokens
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{info.id}")
        self._pending = 0
        self._busy = False
        self._stats = EngineStats(model=info.id)
        self._tokenized: dict[object, tuple[list[int], tuple[str, ...]]] = {}
        self._closed = False
        self.loaded_at = time.time()

    @classmethod
    async def load(
        cls, info: ModelInfo, config: LlamaConfig, *, chat_format: str = "auto", default_max_tokens: int = 0
    ) -> LocalEngine:
        """Load `info`'s file in a worker thread (it takes about a second) and wrap it."""
        model = await asyncio.to_thread(LlamaCppModel, info.path, config)
        tuned = looks_instruction_tuned(info.name, info.id)
        resolved = choose_chat_format(
            chat_format,
            has_template=info.has_chat_template,
            architecture=info.architecture,
            instruction_tuned=tuned,
        )
        logger.info("loaded model %s (context %d, chat format %s)", info.id, model.n_ctx, resolved)
        return cls(info, model, resolved, default_max_tokens)

    # --- Engine protocol ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The model's id (file stem)."""
        return self.info.id

    @property
    def context_length(self) -> int:
        """The context window this engine was loaded with."""
        return int(self._model.n_ctx)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens in the formatted prompt of `request`."""
        return len((await self.prepare(request, check_context=False)).tokens)

    async def prepare(self, request: GenerationRequest, *, check_context: bool = True) -> PreparedPrompt:
        """Format and tokenize `request`, and check that it fits the context window."""
        key = (request.messages, request.prompt)
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
        max_tokens = self._budget(request, len(prompt_tokens), check_context)
        stops = tuple(dict.fromkeys((*request.params.stop, *format_stops)))
        return PreparedPrompt(prompt_tokens, stops, max_tokens, request.is_chat)

    def _tokenize_request(self, request: GenerationRequest) -> tuple[list[int], tuple[str, ...]]:
        model = self._model
        if request.messages is not None:
            chat = render_chat_prompt(
                request.messages,
                chat_format=self.chat_format,
                template=self.info.chat_template,
                bos_token=model.bos_text,
                eos_token=model.eos_text,
            )
            # The rendered prompt already holds BOS and the turn markers as text.
            return model.tokenize(chat.text, add_special=False, parse_special=True), chat.stop
        if isinstance(request.prompt, tuple):
            return self._checked_token_ids(request.prompt), ()
        return model.tokenize(request.prompt or "", add_special=True, parse_special=True), ()

    def _checked_token_ids(self, tokens: tuple[int, ...]) -> list[int]:
        bad = [token for token in tokens if not 0 <= token < self._model.n_vocab]
        if bad:
            raise InvalidRequestError(
                f"Token id {bad[0]} is outside the model's vocabulary (0..{self._model.n_vocab - 1}).", param="prompt"
            )
        return list(tokens)

    def _budget(self, request: GenerationRequest, prompt_tokens: int, check_context: bool) -> int:
        n_ctx = self.context_length
        requested = request.params.max_tokens
        room = n_ctx - prompt_tokens
        if check_context and (room <= 0 or (requested is not None and requested > room)):
            raise ContextLengthExceededError.for_request(
                n_ctx=n_ctx, prompt_tokens=prompt_tokens, requested=requested, chat=request.is_chat
            )
        if requested is not None:
            return requested
        default = self._default_max_tokens
        return max(1, min(default, room) if default > 0 else room)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the completion; errors the client caused are raised before the first chunk."""
        if self._closed:
            raise EngineError(f"Model '{self.model_id}' is unloading.")
        prepared = await self.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: GenerationChunk | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        self._pending += 1
        job = loop.run_in_executor(self._executor, self._run, prepared, request, emit, cancel.is_set)
        job.add_done_callback(self._job_done)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            cancel.set()  # no-op when finished; stops the worker when the client went away

    def _job_done(self, future: asyncio.Future[None]) -> None:
        self._pending -= 1
        if not future.cancelled() and future.exception() is not None:
            logger.error("generation job failed", exc_info=future.exception())

    def _run(
        self,
        prepared: PreparedPrompt,
        request: GenerationRequest,
        emit: Callable[[GenerationChunk | BaseException], None],
        cancelled: Callable[[], bool],
    ) -> None:
        """Worker-thread body: generate tokens, turn them into text, emit chunks."""
        if cancelled():
            return
        self._busy = True
        started = time.perf_counter()
        produced = 0
        try:
            produced, finish, logprob_sum = self._decode_loop(prepared, request, emit, cancelled)
            mean_logprob = logprob_sum / produced if request.params.logprobs and produced else None
            usage = Usage(len(prepared.tokens), produced)
            emit(GenerationChunk("", finish_reason=finish, usage=usage, mean_logprob=mean_logprob))
        except LlamaDecodeError as exc:
            emit(EngineError(f"The local engine failed while generating: {exc}"))
        except Exception as exc:  # the worker must always answer, or the request would hang
            logger.exception("unexpected engine failure")
            emit(EngineError(f"The local engine failed unexpectedly: {exc}"))
        finally:
            self._busy = False
            self._record(produced, time.perf_counter() - started)

    def _decode_loop(
        self,
        prepared: PreparedPrompt,
        request: GenerationRequest,
        emit: Callable[[GenerationChunk | BaseException], None],
        cancelled: Callable[[], bool],
    ) -> tuple[int, FinishReason, float]:
        """Run the token loop; returns (tokens produced, finish reason, sum of token log-probabilities)."""
        model = self._model
        assembler = Utf8Assembler()
        stopper = StopSequenceFilter(prepared.stop)
        trimmer = EdgeWhitespaceTrimmer() if prepared.is_chat else None

        def send(text: str) -> None:
            text = trimmer.push(text) if trimmer else text
            if text:
                emit(GenerationChunk(text))

        produced = 0
        logprob_sum = 0.0
        finish: FinishReason = "length"
        for token in model.generate(
            prepared.tokens,
            request.params,
            max_tokens=prepared.max_tokens,
            forbid_eog_first=prepared.is_chat,
            cancelled=cancelled,
        ):
            if token in model.eog_tokens:
                finish = "stop"
                break
            produced += 1
            if request.params.logprobs:
                logprob_sum += model.token_logprob(token)
            text, hit_stop = stopper.push(assembler.push(model.token_bytes(token)))
            send(text)
            if hit_stop:
                return produced, "stop", logprob_sum
        tail, hit_stop = stopper.push(assembler.flush())
        if not hit_stop:
            tail += stopper.flush()
        send(tail)
        return produced, "stop" if hit_stop else finish, logprob_sum

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

    def stats(self) -> EngineStats:
        """Queue depth, busy flag, throughput figures."""
        self._stats.queue_depth = max(0, self._pending - (1 if self._busy else 0))
        self._stats.busy = self._busy
        return self._stats

    async def close(self) -> None:
        """Finish the running request, then free the model."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, True)
        self._model.close()
