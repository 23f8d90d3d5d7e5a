"""The backends the bench compares: the in-process engine and the real server over HTTP (paused between phases)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any, Protocol

import openai

from common import process_cpu_seconds, start_server
from http_vs_engine.spec import BAN_BIAS, CHAT, ENDPOINTS, ENGINE, HTTP, READY_TIMEOUT_S, RunSpec, Sample, StreamClock
from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.local_engine import LocalEngine
from pensieve.engine.registry import inspect_model_file
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams

# --- backends -----------------------------------------------------------------------------------------


class Backend(Protocol):
    """Something that runs a list of generations (one phase) and reports their samples."""

    name: str

    def supports(self, endpoint: str) -> bool:
        """Whether this backend can serve `endpoint`."""
        ...

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Run the generations one after the other."""
        ...

    def close(self) -> None:
        """Free everything."""
        ...


def engine_params(spec: RunSpec) -> SamplingParams:
    """The engine's sampling parameters for `spec`: greedy, with the banned tokens biased away."""
    return SamplingParams(
        max_tokens=spec.max_tokens,
        temperature=0.0,
        top_p=spec.sampling.top_p,
        top_k=spec.sampling.top_k,
        min_p=spec.sampling.min_p,
        repeat_penalty=spec.sampling.repeat_penalty,
        logit_bias=tuple((token, float(BAN_BIAS)) for token in spec.ban),
    )


class EngineBackend:
    """`LocalEngine` in this process, on a private event loop (the loop only runs during a phase)."""

    name = ENGINE

    def __init__(self, model_path: Path, config: LlamaConfig) -> None:
        self._loop = asyncio.new_event_loop()
        started = time.perf_counter()
        info = inspect_model_file(model_path)
        if info.error is not None:
            raise SystemExit(f"bench: {model_path} is not usable: {info.error}")
        self.info = info
        self._engine = self._loop.run_until_complete(LocalEngine.load(info, config))
        self.load_s = time.perf_counter() - started

    def supports(self, endpoint: str) -> bool:
        """Both endpoints."""
        return endpoint in ENDPOINTS

    # The bench reads a few private attributes of the engine (its llama.cpp model) to learn the
    # vocabulary; the measured path only uses the public generate().
    def eog_tokens(self) -> tuple[int, ...]:
        """The model's end-of-generation token ids."""
        return tuple(sorted(self._engine.vocab.eog_tokens))

    def count_tokens(self, text: str) -> int:
        """Prompt tokens of a text completion of `text` (BOS included)."""
        return len(self._engine.vocab.tokenize(text, add_special=True, parse_special=True))

    def chat_stops(self) -> tuple[str, ...]:
        """The stop sequences the engine's chat format adds to every chat request."""
        request = GenerationRequest(
            model=self._engine.model_id, params=SamplingParams(), messages=(ChatMessage("user", "Hi"),)
        )
        return self._loop.run_until_complete(self._engine.prepare(request)).stop

    def tokens_containing(self, characters: str) -> tuple[int, ...]:
        """Every vocabulary token whose text contains one of `characters` (used to rule out stop sequences)."""
        if not characters:
            return ()
        model = self._engine.vocab
        wanted = [c.encode() for c in characters]
        return tuple(t for t in range(model.n_vocab) if any(c in model.token_bytes(t) for c in wanted))

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Run `specs` on the in-process engine."""
        return [self._loop.run_until_complete(self._run(spec)) for spec in specs]

    async def _run(self, spec: RunSpec) -> Sample:
        chat = spec.endpoint == CHAT
        request = GenerationRequest(
            model=self._engine.model_id,
            params=engine_params(spec),
            messages=(ChatMessage("user", spec.text),) if chat else None,
            prompt=None if chat else spec.text,
        )
        cpu_start = time.process_time()
        clock = StreamClock()
        prompt_tokens = completion_tokens = 0
        finish = ""
        async with aclosing(self._engine.generate(request)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    clock.content()
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                    if chunk.usage is not None:
                        prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        cpu = time.process_time() - cpu_start
        return clock.sample(self.name, spec, prompt_tokens, completion_tokens, finish_reason=finish, cpu_s=cpu)

    def close(self) -> None:
        """Unload the model and close the loop."""
        self._loop.run_until_complete(self._engine.close())
        self._loop.close()


class PausableProcess:
    """A child process that is SIGSTOPped while other backends run, so that it cannot take their CPU."""

    def __init__(self, process: subprocess.Popen[Any]) -> None:
        self.process = process
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP the child."""
        if not self._paused and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT the child and give it a moment to run its overdue timers (such as keep-alive expiry)."""
        if self._paused:
            self.process.send_signal(signal.SIGCONT)
            self._paused = False
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time the child has used so far."""
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class ServerBackend:
    """`python -m pensieve serve` as a subprocess, streamed with the `openai` SDK; paused between phases."""

    name = HTTP

    def __init__(self, model_path: Path, n_ctx: int, n_threads: int, work_dir: Path) -> None:
        self.model_id = model_path.stem
        started = time.perf_counter()
        # The suites' launcher: the caller's PENSIEVE_* settings dropped, run from an empty folder (no .env),
        # in its own process group so that SIGSTOP pauses the server and not this process.
        env = {"PENSIEVE_N_CTX": str(n_ctx), "PENSIEVE_N_THREADS": str(n_threads)}
        self._handle = start_server(
            "http-bench", model_path, work_dir, env, new_session=True, ready_timeout=READY_TIMEOUT_S
        )
        self.base_url = self._handle.base_url
        self._child = PausableProcess(self._handle.process)
        self.startup_s = time.perf_counter() - started
        self._child.pause()

    def supports(self, endpoint: str) -> bool:
        """Both endpoints."""
        return endpoint in ENDPOINTS

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output."""
        return self._handle.log_tail(lines)

    def run_phase(self, specs: Sequence[RunSpec]) -> list[Sample]:
        """Resume the server, stream `specs` through a fresh SDK client, pause the server again."""
        self._child.resume()
        try:
            # A fresh client per phase: no keep-alive connection that the server may have expired meanwhile.
            with openai.OpenAI(
                base_url=f"{self.base_url}/v1",
                api_key="bench",
                max_retries=0,
                timeout=120.0,
                http_client=openai.DefaultHttpxClient(trust_env=False),
            ) as client:
                return [self._run(client, spec) for spec in specs]
        finally:
            self._child.pause()

    def _run(self, client: openai.OpenAI, spec: RunSpec) -> Sample:
        common: dict[str, Any] = {
            "model": self.model_id,
            "temperature": 0.0,
            "top_p": spec.sampling.top_p,
            "logit_bias": {str(token): BAN_BIAS for token in spec.ban},
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_body": {
                "top_k": spec.sampling.top_k,
                "min_p": spec.sampling.min_p,
                "repeat_penalty": spec.sampling.repeat_penalty,
            },
        }
        cpu_server, cpu_client = self._child.cpu_seconds(), time.process_time()
        clock = StreamClock()
        finish = ""
        usage: Any = None
        if spec.endpoint == CHAT:
            chat_stream = client.chat.completions.create(
                messages=[{"role": "user", "content": spec.text}], max_completion_tokens=spec.max_tokens, **common
            )
            for chat_chunk in chat_stream:
                if chat_chunk.choices:
                    if chat_chunk.choices[0].delta.content:
                        clock.content()
                    finish = chat_chunk.choices[0].finish_reason or finish
                usage = chat_chunk.usage or usage
        else:
            stream = client.completions.create(prompt=spec.text, max_tokens=spec.max_tokens, **common)
            for chunk in stream:
                if chunk.choices:
                    if chunk.choices[0].text:
                        clock.content()
                    finish = chunk.choices[0].finish_reason or finish
                usage = chunk.usage or usage
        cpu_client = time.process_time() - cpu_client
        cpu_server = self._child.cpu_seconds() - cpu_server
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return clock.sample(
            self.name,
            spec,
            prompt_tokens,
            completion_tokens,
            finish_reason=finish,
            cpu_s=cpu_server,
            client_cpu_s=cpu_client,
        )

    def close(self) -> None:
        """Stop the server."""
        self._child.stop()
