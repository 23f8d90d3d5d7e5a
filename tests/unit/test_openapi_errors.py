"""/openapi.json declares OpenAI's error JSON (what the server sends), not FastAPI's 422 `detail` shape."""

from __future__ import annotations

import json

from pensieve.api.openapi_errors import ERROR_SCHEMA_NAME
from pensieve.app import create_app
from pensieve.config import Settings


def test_every_operation_declares_openai_errors_and_no_422() -> None:
    schema = create_app(Settings()).openapi()
    text = json.dumps(schema)
    assert '"422"' not in text and "HTTPValidationError" not in text
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert chat["400"]["content"]["application/json"]["schema"] == reference
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            default = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert default == reference, (method, path)
    assert schema["components"]["schemas"][ERROR_SCHEMA_NAME]["required"] == ["error"]
