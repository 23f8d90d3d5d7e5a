"""Routing routes: explain a routing decision without running it, the routing statistics, circuit resets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import ValidationError

from pensieve.api.access import admin_caller, inference_caller
from pensieve.api.deps import (
    ChatDep,
    CloudDep,
    CompletionsDep,
    DecisionsDep,
    LedgerDep,
    PoolDep,
    RouteHeaderDep,
    SettingsDep,
)
from pensieve.burst.planner import estimated_wait_ms
from pensieve.burst.stats import RECENT_DECISIONS
from pensieve.engine.pool import ModelPool
from pensieve.errors import InvalidRequestError, NotFoundError
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest


def local_load(pool: ModelPool) -> list[dict[str, Any]]:
    """Queue depth, busy flag, speed and estimated wait of every loaded local model."""
    loads = []
    for engine in pool.loaded():
        stats = engine.stats()
        loads.append(
            {
                "model": engine.model_id,
                "queue_depth": stats.queue_depth,
                "busy": stats.busy,
                "busy_sequences": stats.busy_sequences,
                "parallel": stats.parallel,
                "estimated_wait_ms": estimated_wait_ms(engine),
                "recent_tokens_per_second": stats.recent_tokens_per_second,
                "recent_service_seconds": stats.recent_service_seconds,
            }
        )
    return loads


router = APIRouter(prefix="/api", tags=["Routing"], dependencies=[Depends(inference_caller)])

_EXAMPLE = {"model": "auto", "messages": [{"role": "user", "content": "Summarise this contract in 3 bullets."}]}


@router.post("/route/explain")
async def explain_route(
    chat: ChatDep,
    completions: CompletionsDep,
    header: RouteHeaderDep,
    payload: dict[str, Any] = Body(..., examples=[_EXAMPLE]),  # noqa: B008 - FastAPI's way to declare a body
) -> dict[str, Any]:
    """The decision for a chat (`messages`) or completion (`prompt`) request and every criterion's verdict.

    Nothing is generated and nothing is sent to a cloud; the response holds no prompt text.
    """
    try:
        if "messages" in payload:
            return await chat.explain(ChatCompletionRequest.model_validate({"model": "auto", **payload}), header)
        return await completions.explain(CompletionRequest.model_validate({"model": "auto", **payload}), header)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequestError(f"Invalid request to explain: {first['msg']} at '{where}'.", param=where) from exc


@router.get("/burst/stats")
async def burst_stats(
    settings: SettingsDep,
    chat: ChatDep,
    ledger: LedgerDep,
    decisions: DecisionsDep,
    cloud: CloudDep,
    pool: PoolDep,
    recent: Annotated[int, Query(ge=0, le=RECENT_DECISIONS)] = 50,
) -> dict[str, Any]:
    """Requests by route and reason, cloud spend vs caps, money saved locally, circuits, the confidence
    cascade's share and threshold, recent decisions (each local answer with its confidence)."""
    totals = ledger.totals()
    return {
        "requests": decisions.counts(),
        "spend": {
            "today_usd": totals.today_usd,
            "month_usd": totals.month_usd,
            "all_time_usd": totals.all_time_usd,
            "daily_cap_usd": settings.budget.daily_usd,
            "monthly_cap_usd": settings.budget.monthly_usd,
            "caps_enforced": settings.burst.budget,
        },
        "saved": {
            "today_usd": totals.saved_today_usd,
            "month_usd": totals.saved_month_usd,
            "all_time_usd": totals.saved_all_time_usd,
            "priced_at": cloud.default_model_id,
        },
        "tokens": {
            "cloud_requests": totals.cloud_requests,
            "local_requests": totals.local_requests,
            "cloud_prompt_tokens": totals.cloud_prompt_tokens,
            "cloud_completion_tokens": totals.cloud_completion_tokens,
            "local_prompt_tokens": totals.local_prompt_tokens,
            "local_completion_tokens": totals.local_completion_tokens,
        },
        "local": local_load(pool),
        "providers": cloud.public_info(),
        "confidence": {
            "enabled": settings.burst.confidence,
            "judged_tokens": settings.burst.stream_hold_tokens,
            **chat.planner.confidence_gate.snapshot(),
        },
        "recent": decisions.recent_decisions(recent),
    }


@router.post("/burst/circuits/reset", dependencies=[Depends(admin_caller)])
async def reset_circuits(cloud: CloudDep, provider: str | None = None) -> dict[str, Any]:
    """Close the circuit breaker of one provider (`?provider=name`) or of all: the provider is known to be back."""
    try:
        names = cloud.reset_circuits(provider)
    except KeyError as exc:
        raise NotFoundError(f"No cloud provider is named {provider!r}.", param="provider") from exc
    return {"reset": names, "providers": cloud.public_info()}
