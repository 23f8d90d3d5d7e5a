"""OpenAI's `response_format` as a llama.cpp GBNF grammar, so constrained output always parses."""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf


class GrammarError(ValueError):
    """The response_format cannot be turned into a grammar (unknown type, unsupported schema)."""


def grammar_for(response_format: dict[str, Any] | None) -> str | None:
    """The GBNF grammar for a response_format; None for free text."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return str(JSON_GBNF)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise GrammarError("response_format.json_schema.schema must be a JSON Schema object")
        try:
            return str(json_schema_to_gbnf(json.dumps(schema)))
        except Exception as exc:  # llama-cpp-python's converter asserts, raises KeyError...: all are bad schemas
            raise GrammarError(f"this JSON Schema cannot be enforced: {exc}") from exc
    raise GrammarError(f"response_format type {kind!r} is not supported; use text, json_object or json_schema")
