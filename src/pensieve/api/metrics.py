"""GET /metrics: Prometheus text exposition of the app's own metrics registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from pensieve.api.access import inference_caller
from pensieve.api.deps import MetricsDep, PoolDep

router = APIRouter(tags=["Health"], dependencies=[Depends(inference_caller)])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, pool: PoolDep) -> Response:
    """Request, token, cost, fallback and latency metrics, and the local engines' load gauges."""
    pool.notice_crashes()  # a worker that died since the last request is counted in this scrape already
    metrics.set_local_load(engine.stats() for engine in pool.loaded())
    return Response(metrics.exposition(), media_type=metrics.content_type)
