"""Tool calling in a chat request: OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`, validated.

Split from schemas/requests.py so the request body stays one readable module. A tool is a function with a
name, a description and a JSON Schema of its parameters; what is checked here is what any engine needs
(names OpenAI would accept, a parameters schema that is an object schema, a tool_choice naming a declared
tool). Whether a local model can enforce a schema is decided later, when it is turned into a grammar.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from pensieve.errors import InvalidRequestError
from pensieve.schemas.messages import StrictModel

MAX_TOOLS = 128  # OpenAI's own limit
# OpenAI's rule for function names: letters, digits, underscores and dashes, at most 64 characters.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def check_tool_name(name: str) -> str:
    """`name` when OpenAI would accept it as a function name; ValueError otherwise."""
    if not _TOOL_NAME.match(name):
        raise ValueError(f"function names are 1 to 64 letters, digits, '_' or '-'; got {name[:80]!r}")
    return name


def _check_schema(schema: Any, where: str) -> None:
    """A light structural check of a JSON Schema (types, properties, required), recursively.

    Not a full meta-schema validation (that would need a validator dependency): it catches the mistakes
    clients make (a list where an object belongs, an unknown type, `required` naming nothing) with a clear
    message instead of a grammar error later or a provider's 400.
    """
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ValueError(f"{where} must be a JSON Schema object")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for item in kinds:
        if item not in _SCHEMA_TYPES:
            raise ValueError(f"{where}.type {item!r} is not a JSON Schema type")
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise ValueError(f"{where}.properties must be an object")
        for key, value in properties.items():
            _check_schema(value, f"{where}.properties.{key}")
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise ValueError(f"{where}.required must be a list of property names")
    if "items" in schema and not isinstance(schema["items"], list):
        _check_schema(schema["items"], f"{where}.items")
    for keyword in ("anyOf", "oneOf", "allOf"):
        options = schema.get(keyword)
        if options is not None:
            if not isinstance(options, list):
                raise ValueError(f"{where}.{keyword} must be a list of schemas")
            for index, option in enumerate(options):
                _check_schema(option, f"{where}.{keyword}[{index}]")


class FunctionSpec(StrictModel):
    """`tools[i].function`: what the model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_tool_name(value)

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_schema(value, "parameters")
            if value.get("type", "object") != "object":
                raise ValueError("parameters must be an object schema (type 'object')")
        return value


class ToolSpec(StrictModel):
    """One entry of `tools`."""

    type: Literal["function"]
    function: FunctionSpec

    def as_dict(self) -> dict[str, object]:
        """The OpenAI-shaped tool, as sent (unset fields left out)."""
        return {"type": "function", "function": self.function.model_dump(exclude_none=True)}


class NamedFunction(StrictModel):
    """`tool_choice.function`."""

    name: str


class NamedToolChoice(StrictModel):
    """`tool_choice` naming the one function the model must call."""

    type: Literal["function"]
    function: NamedFunction


class ToolFields(StrictModel):
    """The tool-calling fields of a chat request body."""

    tools: list[ToolSpec] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def tool_fields(self) -> dict[str, Any]:
        """The GenerationRequest fields for tools: checked, and in the engine's plain shapes.

        A tool_choice naming an undeclared function, or `required` without tools, is a 400 on `tool_choice`;
        two tools of one name a 400 on `tools`.
        """
        tools = self.tools or []
        names = [tool.function.name for tool in tools]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise InvalidRequestError(f"Two tools are named '{duplicate}'.", param="tools")
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise InvalidRequestError(
                f"tool_choice names function '{choice.function.name[:80]}', which is not among the tools.",
                param="tool_choice",
            )
        if choice == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs at least one tool.", param="tool_choice")
        return {
            "tools": tuple(tool.as_dict() for tool in tools),
            "tool_choice": choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
