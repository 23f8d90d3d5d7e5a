"""OpenAI's `response_format` (or a client's own GBNF) as a llama.cpp grammar, so constrained output always parses.

Every grammar passes `check_gbnf` before it goes to the worker: llama.cpp's parser can exhaust the worker's
memory on some malformed grammars (pensieve.engine.gbnf), and a converted schema must not be an exception.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from pensieve.engine.gbnf import GbnfError, check_gbnf
from pensieve.errors import EngineError, InvalidRequestError, PensieveError


class GrammarError(ValueError):
    """The response_format cannot be turned into a grammar (unknown type, unsupported schema)."""


def grammar_for(response_format: dict[str, Any] | None, gbnf: str | None = None) -> str | None:
    """The GBNF grammar for a response_format, or the client's own `gbnf`; None for free text."""
    grammar = gbnf if gbnf is not None else _converted(response_format)
    if grammar is not None:
        try:
            check_gbnf(grammar)
        except GbnfError as exc:
            raise GrammarError(str(exc)) from exc
    return grammar


def _converted(response_format: dict[str, Any] | None) -> str | None:
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


def generation_failure(error: str | None, *, grammar: str | None) -> PensieveError:
    """The error for a worker's failed run: a grammar llama.cpp refused (left recursion...) is the client's."""
    if grammar is not None and (error or "").startswith("cannot start"):
        return InvalidRequestError(f"Invalid grammar: llama.cpp could not use it ({error}).", param="grammar")
    return EngineError(f"The local engine failed while generating: {error}")
