"""The one place that turns a stream of JSON payloads into server-sent events.

Contract (principle 4): the caller fetches the first payload before building the response, so an
error before it is a plain HTTP error; an error after it becomes an OpenAI error event, and every
stream ends with `data: [DONE]`. When the client disconnects, sse-starlette cancels the sending task;
closing the payload iterator then propagates the cancellation to the engine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from sse_starlette import EventSourceResponse

from pensieve.errors import EngineError, PensieveError

logger = logging.getLogger(__name__)

DONE = "[DONE]"
# Comment lines keep idle connections (a long queue wait) alive through proxies.
PING_SECONDS = 15


def event_stream_response(
    first: str, rest: AsyncGenerator[str, None], headers: dict[str, str] | None = None
) -> EventSourceResponse:
    """An SSE response sending `first`, then every payload of `rest`, then [DONE]."""

    async def events() -> AsyncIterator[dict[str, str]]:
        async with aclosing(rest):
            yield {"data": first}
            try:
                async for payload in rest:
                    yield {"data": payload}
            except PensieveError as exc:
                yield {"data": json.dumps(exc.to_body())}
            except Exception as exc:
                logger.exception("stream failed after its first chunk")
                yield {"data": json.dumps(EngineError(f"The stream failed: {exc}").to_body())}
        yield {"data": DONE}

    return EventSourceResponse(
        events(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        ping=PING_SECONDS,
        sep="\n",
    )
