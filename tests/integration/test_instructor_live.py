"""instructor's `Mode.TOOLS` extraction against the real server and local model (issue #17).

instructor asks for one named tool call whose parameters are the response model's JSON Schema; the server
answers a named `tool_choice` under a grammar built from that schema, so even the 270M base model returns
arguments that validate. The test is a two-step task: extract a record from a text, then feed the record
back and extract a second model from it. `Mode.JSON_SCHEMA` (a `response_format` of type `json_schema`,
also grammar-constrained) is checked once.

instructor cannot be in the `dev` extra: every release (1.17.0 the newest) pins `jiter<0.15`, while the
`openai==3.51.0` Pensieve pins needs `jiter>=0.16`, so pip cannot resolve both. Installed with `--no-deps`
it imports and runs against openai 3.51.0 and jiter 0.19, so the set-up installs it that way with the dev
extra (`[tool.pensieve] dev-no-deps` in pyproject.toml); the module is skipped where it is not installed.
"""

from __future__ import annotations

from typing import Any

import openai
import pydantic
import pytest

from support.server import ServerHandle

instructor = pytest.importorskip("instructor")

pytestmark = pytest.mark.integration


class Person(pydantic.BaseModel):
    """Step 1: a person record read from a sentence."""

    name: str
    age: int
    city: str


class Greeting(pydantic.BaseModel):
    """Step 2: a greeting card for the person of step 1."""

    recipient: str
    message: str


def patched_client(server: ServerHandle, mode: Any) -> Any:
    """instructor in `mode` over an `openai.OpenAI` on the server's `/v1` (no retries)."""
    sdk = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    return instructor.from_openai(sdk, mode=mode)


def extract(client: Any, server: ServerHandle, model: type[pydantic.BaseModel], prompt: str) -> tuple[Any, Any]:
    """One extraction: the validated model and the raw completion it was read from."""
    return client.chat.completions.create_with_completion(
        model=server.model_id,
        response_model=model,
        messages=[{"role": "user", "content": prompt}],
        max_retries=1,
        temperature=0,
        max_tokens=120,
    )


def assert_named_call(completion: Any, name: str) -> None:
    """The server answered with exactly one call of the tool `name`, as OpenAI does."""
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == name and call.id.startswith("call_")


def test_tools_mode_two_step_extraction(server: ServerHandle) -> None:
    client = patched_client(server, instructor.Mode.TOOLS)
    person, first = extract(client, server, Person, "Extract the person: Alice Martin, 34 years old, lives in Lyon.")
    assert isinstance(person, Person) and isinstance(person.age, int)
    assert_named_call(first, "Person")

    record = person.model_dump_json()
    greeting, second = extract(client, server, Greeting, f"Write a short birthday greeting for this person: {record}")
    assert isinstance(greeting, Greeting) and isinstance(greeting.recipient, str) and isinstance(greeting.message, str)
    assert_named_call(second, "Greeting")


def test_json_schema_mode(server: ServerHandle) -> None:
    client = patched_client(server, instructor.Mode.JSON_SCHEMA)
    person, completion = extract(client, server, Person, "Extract the person: Bob Durand, 51 years old, lives in Nice.")
    assert isinstance(person, Person) and isinstance(person.age, int)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls, choice
    assert Person.model_validate_json(choice.message.content).model_dump() == person.model_dump()
