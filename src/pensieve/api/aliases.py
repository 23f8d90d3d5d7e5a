"""The OpenAI paths without their `/v1` prefix, as llama-server serves them: /chat/completions, /models...

Clients written for llama.cpp's server (and some tools that take a bare host as base URL) call these. Each
alias is the very route it mirrors: the same handler, the same dependencies (the API key check), the same
response model; the body limit and the other middleware see every path alike. The aliases are left out
of the OpenAPI document, which lists each operation once, under /v1.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

PREFIX = "/v1"
ALIASED_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/models/{model_id:path}"}
)


def add_unprefixed_aliases(app: FastAPI, *routers: APIRouter) -> list[str]:
    """Serve each route of `routers` in ALIASED_PATHS under its path without `/v1` too; the alias paths added.

    The routers' own routes are read (an app wraps included routers): they carry the router's dependencies.
    """
    added = []
    for route in [route for router in routers for route in router.routes]:
        if not (isinstance(route, APIRoute) and route.path in ALIASED_PATHS):
            continue
        path = route.path.removeprefix(PREFIX)
        app.add_api_route(
            path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            dependencies=route.dependencies,
            responses=route.responses,
            response_class=route.response_class,
            name=f"{route.name}_unprefixed",
            include_in_schema=False,
        )
        added.append(path)
    return added
