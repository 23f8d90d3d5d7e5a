"""POST /v1/completions, served: `n` choices for each prompt (a list of prompts is one batched request).

Prompt scoring: `echo` with `logprobs` gives the prompt's tokens their log-probabilities too (the first
one null), before the generated tokens', as OpenAI's legacy API did and lm-evaluation-harness expects;
`max_tokens: 0` then scores the prompt and generates nothing. OpenAI's current models refuse echo with
logprobs, and a cloud engine cannot score a prompt, so such a request always runs locally: one pinned to
the cloud (the route header or a cloud model id) is a 400.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from pensieve.burst.planner import AUTO_MODEL, RouteHeader
from pensieve.engine_api import GenerationRequest, TokenLogprob, Usage
from pensieve.errors import InvalidRequestError
from pensieve.schemas.requests import CompletionRequest
from pensieve.schemas.responses import Completion, CompletionChoice, CompletionLogprobs, UsageOut, new_id, now
from pensieve.serving.base import GenerationServing, PreparedRun
from pensieve.serving.choices import add_usage, collect_choices, pieces, seeded


def _echo_text(body: CompletionRequest, request: GenerationRequest, scored: Sequence[TokenLogprob]) -> str:
    """The prompt when the body asks for it to be echoed; a token-id prompt as its tokens' text (when scored)."""
    if not body.echo:
        return ""
    return request.prompt if isinstance(request.prompt, str) else "".join(token.token for token in scored)


class CompletionServing(GenerationServing[CompletionRequest]):
    """Text completions (the legacy endpoint), run where the route planner decides."""

    def requests(self, body: CompletionRequest) -> list[GenerationRequest]:
        """One engine request per prompt, with the sampling defaults filled in."""
        return body.to_requests(self.defaults)

    def route_header(self, body: CompletionRequest, header: RouteHeader | None) -> RouteHeader | None:
        """A prompt-scoring request runs locally (see the module's docstring); pinned to the cloud it is a 400."""
        if not body.scores_prompt:
            return header
        model = body.model_id(self.defaults)
        if header == "cloud" or (model.lower() != AUTO_MODEL and self.cloud.resolve(model) is not None):
            raise InvalidRequestError(
                "echo with logprobs (prompt scoring) is served by local models only: cloud models do not return "
                "prompt log-probabilities. Use a local model (or 'auto'), without x-pensieve-route: cloud.",
                param="echo",
                code="unsupported_parameter",
            )
        return "local"

    async def _answer(self, run: PreparedRun[CompletionRequest]) -> Completion:
        body = run.body
        choices: list[CompletionChoice] = []
        usage = Usage(0, 0)
        for prompt_index, request in enumerate(run.requests):
            results = await collect_choices(run.runner, request, body.n)
            scored = results[0].prompt_logprobs  # only the first choice scores the prompt: it is shared
            echo = _echo_text(body, request, scored)
            for choice, result in enumerate(results):
                choices.append(
                    CompletionChoice(
                        index=prompt_index * body.n + choice,
                        text=echo + result.text,
                        finish_reason=result.finish_reason,
                        logprobs=CompletionLogprobs.of(result.logprobs, len(echo), scored)
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
            scored: tuple[TokenLogprob, ...] = ()  # the first choice's scored prompt, echoed by every choice
            for choice in range(body.n):
                index = prompt_index * body.n + choice
                first, offset = True, 0
                async for piece in pieces(run.runner, seeded(request, choice)):
                    text = piece.text
                    prompt_tokens: tuple[TokenLogprob, ...] = ()
                    if first:  # the echoed prompt (and its scores) go with the choice's first chunk
                        scored = scored or piece.prompt_logprobs
                        echo = _echo_text(body, request, scored)
                        text, offset, prompt_tokens, first = echo + text, len(echo), scored, False
                    logprobs = (
                        CompletionLogprobs.of(piece.logprobs, offset, prompt_tokens)
                        if body.logprobs is not None
                        else None
                    )
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
