"""GET /metrics: Prometheus text exposition of the app's own metrics registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pensieve.api.deps import ControllerDep, require_api_key

router = APIRouter(tags=["Health"], dependencies=[Depends(require_api_key)])


@router.get("/metrics", response_class=Response)
async def metrics(controller: ControllerDep) -> Response:
    """Request, token, cost, fallback and latency metrics, and the local engines' load gauges."""
    controller.refresh_gauges()
    return Response(generate_latest(controller.stats.registry), media_type=CONTENT_TYPE_LATEST)
