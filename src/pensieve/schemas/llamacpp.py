"""The llama.cpp server's own request fields, so its clients work unchanged: n_predict, grammar, json_schema.

- `n_predict` is `max_tokens` under llama-server's name. Set together with `max_tokens` (or
  `max_completion_tokens`) it must agree with it: llama-server lets `n_predict` win, OpenAI knows only
  `max_tokens`, so two different values are refused (400) rather than one silently ignored. -1 means no
  limit (the context window bounds the answer), as in llama-server.
- `grammar` is a GBNF grammar, checked here (pensieve.engine.gbnf) so a malformed one is a 400 naming
  `grammar` before any routing; only local models can enforce it (a cloud model refuses it, `auto` keeps
  the request local).
- `json_schema` is llama-server's top-level JSON Schema; it becomes OpenAI's
  `response_format: {"type": "json_schema", ...}`, which local models enforce with a grammar and cloud
  models receive as such. llama-server's `response_format: {"type": "json_object", "schema": {...}}`
  is translated the same way (schemas/requests.py).

Only one constraint may be given: two of grammar, json_schema and a JSON response_format are a 400.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pensieve.engine.gbnf import MAX_GRAMMAR_CHARS, GbnfError, check_gbnf
from pensieve.errors import InvalidRequestError


def schema_format(schema: dict[str, Any]) -> dict[str, object]:
    """OpenAI's response_format for a bare JSON Schema (llama-server's `json_schema` / `schema`)."""
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


class LlamaCppFields(BaseModel):
    """llama-server's request fields that have a meaning here (mixed into the chat and completions bodies)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    n_predict: int | None = Field(
        None, ge=-1, description="Extension (llama.cpp): tokens to generate, as max_tokens; -1 = no limit."
    )
    grammar: str | None = Field(
        None,
        max_length=MAX_GRAMMAR_CHARS,
        description="Extension (llama.cpp): a GBNF grammar the output must follow (local models only).",
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="Extension (llama.cpp): a JSON Schema the output must follow (as response_format)."
    )

    @field_validator("n_predict")
    @classmethod
    def _check_n_predict(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("n_predict must be -1 (no limit) or at least 1")
        return value

    def token_limit(self, max_tokens: int | None, *, max_tokens_set: bool) -> int | None:
        """The completion limit from max_tokens (when the client set it) and n_predict."""
        if self.n_predict is None:
            return max_tokens
        wanted = None if self.n_predict < 0 else self.n_predict
        if max_tokens_set and max_tokens != wanted:
            raise InvalidRequestError(
                f"n_predict ({self.n_predict}) and max_tokens ({max_tokens}) disagree; set one of them.",
                param="n_predict",
            )
        return wanted

    def constraint(self, response_format: dict[str, object] | None) -> tuple[dict[str, object] | None, str | None]:
        """(response_format, GBNF grammar) once the llama.cpp fields are folded in; refuses two constraints."""
        given = [
            name
            for name, value in (("response_format", response_format), ("json_schema", self.json_schema))
            if value is not None
        ]
        if self.grammar is not None:
            given.append("grammar")
        if len(given) > 1:
            raise InvalidRequestError(f"Set only one of {' and '.join(given)}.", param=given[-1])
        if self.json_schema is not None:
            return schema_format(self.json_schema), None
        if self.grammar is not None:
            try:
                check_gbnf(self.grammar)
            except GbnfError as exc:
                raise InvalidRequestError(f"Invalid grammar: {exc}.", param="grammar") from exc
        return response_format, self.grammar
