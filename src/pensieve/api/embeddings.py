"""POST /v1/embeddings: OpenAI-shaped embeddings from a local model (mean-pooled, L2-normalised)."""

from __future__ import annotations

import base64
import struct

from fastapi import APIRouter, Depends, Request, Response

from pensieve.api.access import CallerDep, inference_caller
from pensieve.api.deps import CloudDep, DrainDep, PoolDep, RateLimiterDep, SettingsDep
from pensieve.api.limits import CLIENT_CLOSED, ClientDisconnectedError, Deadline, cancel_on_disconnect
from pensieve.burst.planner import AUTO_MODEL
from pensieve.errors import InvalidRequestError
from pensieve.rate_limits import estimated_prompt_tokens
from pensieve.schemas.requests import EmbeddingRequest
from pensieve.schemas.responses import Embedding, EmbeddingList, EmbeddingUsage

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(inference_caller)])


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the float32 values, little-endian, base64-encoded (what the SDK decodes)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@router.post("/embeddings", response_model=EmbeddingList)
async def create_embeddings(
    body: EmbeddingRequest,
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    cloud: CloudDep,
    caller: CallerDep,
    limiter: RateLimiterDep,
    drain: DrainDep,
) -> EmbeddingList | Response:
    """Embed text(s) or token ids with a local model (`auto` or no model: the default one)."""
    deadline = Deadline(settings.server.request_timeout_seconds, drain)
    limiter.admit(caller.id, estimated_prompt_tokens(len(await request.body())))
    requested = (body.model or "").strip()
    if cloud.resolve(requested) is not None:
        raise InvalidRequestError(
            "Embeddings run on local models only; name a local model or 'auto'.", param="model", code="model_not_local"
        )
    model = settings.engine.default_model if requested.lower() in ("", AUTO_MODEL) else requested
    inputs = body.inputs()
    engine = await pool.get(model)
    try:
        with pool.hold(engine.model_id):  # no idle unload while the worker computes
            # A client that gives up (a timeout, then a retry) must not leave the worker embedding for nobody.
            vectors, tokens = await cancel_on_disconnect(request, deadline.within(engine.embed(inputs)))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    data = [
        Embedding(index=index, embedding=_base64(vector) if body.encoding_format == "base64" else vector)
        for index, vector in enumerate(vectors)
    ]
    return EmbeddingList(
        data=data, model=engine.model_id, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )
