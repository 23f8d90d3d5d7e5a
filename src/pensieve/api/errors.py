"""Exception handlers: every failure leaves the server as OpenAI's error JSON, never FastAPI's `detail`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pensieve.errors import PensieveError

logger = logging.getLogger(__name__)


def error_response(
    status: int, message: str, *, error_type: str, code: str | None, param: str | None = None
) -> JSONResponse:
    """A JSONResponse in OpenAI's error shape."""
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


# Labels pydantic puts in an error's location for the branch of a union it tried ('stop.str', 'content.list[...]').
_UNION_BRANCH_LABELS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none", "null"})


def _is_union_branch_label(part: str) -> bool:
    # OpenAI's parameter names are lower snake_case, so brackets, dashes, parentheses or a capital
    # (a model class name such as 'TextContentPart') mark pydantic's label, never a field.
    return part in _UNION_BRANCH_LABELS or any(c in part for c in "[-(") or part[:1].isupper()


def _param_path(location: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content', 'str') -> 'messages[0].content'."""
    path = ""
    for part in location[1:] if location[:1] == ("body",) else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _is_union_branch_label(str(part)):
            path += f".{part}" if path else str(part)
    return path or None


def describe_validation(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """(message, param, code) for the first validation problem, worded for API users."""
    errors = exc.errors()
    if not errors:
        return "The request body is invalid.", None, "invalid_request"
    first = errors[0]
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return (
            f"We could not parse the JSON body of your request ({reason}). "
            "The body must be valid JSON; check quoting and commas.",
            None,
            "invalid_json",
        )
    param = _param_path(tuple(first.get("loc", ())))
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    if kind == "model_attributes_type" or (kind == "dict_type" and param is None):
        return "The request body must be a JSON object.", None, "invalid_request"
    value = first.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')} (got {shown})."
    return message, param, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that map every exception to an OpenAI error response."""

    @app.exception_handler(PensieveError)
    async def _pensieve_error(_request: Request, exc: PensieveError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation(exc)
        return error_response(400, message, error_type="invalid_request_error", code=code, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown endpoint: {request.method} {request.url.path}."
            code = "unknown_url"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        response = error_response(exc.status_code, message, error_type="invalid_request_error", code=code)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "The server had an internal error; see its log for details.", error_type="server_error", code=None
        )
