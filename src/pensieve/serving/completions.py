"""POST /v1/completions, served: `n` choices for each prompt (a list of prompts is one batched request)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from pensieve.engine_api import GenerationRequest, Usage
from pensieve.schemas.requests import CompletionRequest
from pensieve.schemas.responses import Completion, CompletionChoice, CompletionLogprobs, UsageOut, new_id, now
from pensieve.serving.base import GenerationServing, PreparedRun
from pensieve.serving.choices import add_usage, collect_choices, pieces, seeded


def _echo_text(body: CompletionRequest, request: GenerationRequest) -> str:
    """The prompt when the body asks for it to be echoed (text prompts only)."""
    return request.prompt if body.echo and isinstance(request.prompt, str) else ""


class CompletionServing(GenerationServing[CompletionRequest]):
    """Text completions (the legacy endpoint), run where the route planner decides."""

    def requests(self, body: CompletionRequest) -> list[GenerationRequest]:
        """One engine request per prompt, with the sampling defaults filled in."""
        return body.to_requests(self.defaults)

    async def _answer(self, run: PreparedRun[CompletionRequest]) -> Completion:
        body = run.body
        choices: list[CompletionChoice] = []
        usage = Usage(0, 0)
        for prompt_index, request in enumerate(run.requests):
            echo = _echo_text(body, request)
            for choice, result in enumerate(await collect_choices(run.runner, request, body.n)):
                choices.append(
                    CompletionChoice(
                        index=prompt_index * body.n + choice,
                        text=echo + result.text,
                        finish_reason=result.finish_reason,
                        logprobs=CompletionLogprobs.of(result.logprobs, len(echo))
                        if body.logprobs is not None
                        else None,
                    )
                )
                usage = add_usage(usage, result.usage, count_prompt=choice == 0)
        return Completion(
            id=new_id("cmpl"), created=now(), model=run.info.model, choices=choices, usage=UsageOut.of(usage)
        )

    async def _payloads(self, run: PreparedRun[CompletionRequest]) -> AsyncGenerator[str, None]:
        body = run.body
        completion_id, created = new_id("cmpl"), now()

        def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> str:
            return Completion(
                id=completion_id,
                created=created,
                model=run.info.model,
                choices=choices,
                usage=UsageOut.of(usage) if usage else None,
            ).model_dump_json()

        total = Usage(0, 0)
        for prompt_index, request in enumerate(run.requests):
            for choice in range(body.n):
                index = prompt_index * body.n + choice
                echo = _echo_text(body, request)
                offset = len(echo)
                async for piece in pieces(run.runner, seeded(request, choice)):
                    text, echo = echo + piece.text, ""
                    logprobs = CompletionLogprobs.of(piece.logprobs, offset) if body.logprobs is not None else None
                    offset += len(piece.text)
                    if text or piece.finish_reason is not None:
                        choice_out = CompletionChoice(
                            index=index, text=text, finish_reason=piece.finish_reason, logprobs=logprobs
                        )
                        yield chunk([choice_out])
                    if piece.finish_reason is not None:
                        total = add_usage(total, piece.usage, count_prompt=choice == 0)
        if body.include_usage:
            yield chunk([], total)
