"""The OpenAPI document declares the errors the server really sends: OpenAI's error JSON, never FastAPI's 422.

FastAPI documents a 422 `HTTPValidationError` (`{"detail": [...]}`) on every operation with a body or
parameters, but `api/errors.py` answers such requests with 400 in OpenAI's shape. Generated clients and
schema fuzzers read the document, so it says what happens: 400 and every other error status (`default`)
carry `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA_NAME = "OpenAIError"
_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": _NULLABLE_STRING,
                "code": _NULLABLE_STRING,
            },
        }
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}}}


def declare_openai_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an OpenAPI document) with FastAPI's 422 replaced by OpenAI's error shape on every operation."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": "Invalid request", "content": _ERROR_CONTENT})
            responses.setdefault("default", {"description": "Error", "content": _ERROR_CONTENT})
    return schema


def install_openai_error_docs(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json, /docs) declare OpenAI's error shape."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_openai_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
