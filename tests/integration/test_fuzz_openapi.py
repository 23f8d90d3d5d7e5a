"""Property-based fuzzing of the whole OpenAPI schema (schemathesis): no 5xx, every error in OpenAI's shape.

Schemathesis reads /openapi.json from a real, dedicated server (the real model, plus the suite's hostile
model files) and sends each operation valid and invalid requests generated from its schema. Every answer
must pass three checks:

- no 5xx (`not_a_server_error`), except the one documented answer a generated request can provoke here:
  500 `model_load_failed` for a request naming one of the hostile model files;
- every 4xx/5xx JSON body is exactly OpenAI's `{"error": {"message", "type", "param", "code"}}`;
- a 2xx body matches the response schema the operation declares.

The server is throw-away, so settings PATCH/save and model unload are fuzzed too (the settings it would
write go to its own temporary `.env`); left out are POST /api/models/install-default (it assembles a
model for minutes), POST /api/models/pull (it needs a hub) and DELETE /api/models/{id} (shared files).
Generation is capped so a generated `max_tokens: 1000000` is refused at once, not run.

Reproducible in CI: hypothesis is derandomized (a fixed seed per test). A bigger budget locally:
`PENSIEVE_FUZZ_EXAMPLES=500 pytest tests/integration/test_fuzz_openapi.py` (see docs/development.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.schemas import APIOperation

from support.checks import ADMIN_HEADERS, ERROR_KEYS
from support.models import ModelsFolder
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

# Examples per operation and generation mode: 100 runs the module in ~50 s (load 5 on 2 cores).
EXAMPLES = int(os.environ.get("PENSIEVE_FUZZ_EXAMPLES", "100"))
# A request that takes longer than this is a hang: generation is capped to a few tokens below, but another
# engineer's benchmark on the same 2 cores can make 16 tokens take 30 s.
REQUEST_TIMEOUT = 120.0

FUZZ_ENV = {
    # A request without max_tokens generates 8 tokens; one asking for more than 64 in all is a fast 400.
    "PENSIEVE_DEFAULT_MAX_TOKENS": "8",
    "PENSIEVE_MAX_REQUEST_TOKENS": "64",
    # Generated bodies stay small; a huge one is a fast 413, not a long embedding run.
    "PENSIEVE_MAX_REQUEST_BYTES": "65536",
}

# Left out: install-default takes minutes (it assembles and hashes the default model) and needs the package
# index; a pull needs a hub on the network (test_hub_live.py runs it against the fake hub); a delete would
# remove the suite's shared model files (test_hub_live.py deletes a model of its own).
SLOW_OPERATIONS = (
    {"method": "POST", "path": "/api/models/install-default"},
    {"method": "POST", "path": "/api/models/pull"},
    {"method": "DELETE", "path": "/api/models/{model_id}"},
)


def _named_model(case: schemathesis.Case) -> str | None:
    """The model a request names: the `{model_id}` in its path, else `model` in its JSON body."""
    path_model = (case.path_parameters or {}).get("model_id")
    if isinstance(path_model, str):
        return path_model
    body = case.body if isinstance(case.body, dict) else {}
    model = body.get("model")
    return model if isinstance(model, str) else None


def _error_code(response: Any) -> str | None:
    try:
        body = json.loads(response.text)
        code = body["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _documented_server_error(case: schemathesis.Case, response: Any, bad_ids: tuple[str, ...]) -> bool:
    """A 5xx that is the right answer: a hostile model file cannot load (500 model_load_failed)."""
    return (
        response.status_code == 500 and _error_code(response) == "model_load_failed" and _named_model(case) in bad_ids
    )


@schemathesis.check
def openai_error_shape(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """Every 4xx/5xx with a JSON body is exactly `{"error": {"message", "type", "param", "code"}}`."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), f"{response.status_code} error is not JSON: {content_type}"
    body = json.loads(response.text)
    assert isinstance(body, dict) and set(body) == {"error"}, f"not OpenAI's error shape: {body}"
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, f"not OpenAI's error keys: {body}"
    assert isinstance(error["message"], str) and error["message"].strip(), f"empty message: {body}"
    assert isinstance(error["type"], str) and error["type"], f"empty type: {body}"
    assert error["param"] is None or isinstance(error["param"], str), f"param not a string: {body}"
    assert error["code"] is None or isinstance(error["code"], str), f"code not a string: {body}"
    return None


CHECKS = [not_a_server_error, openai_error_shape, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """A throw-away server for the fuzzer: settings it changes and models it unloads touch no other test."""
    with server_factory("fuzz", FUZZ_ENV) as handle:
        yield handle


@pytest.fixture(scope="module")
def operations(fuzz_server: ServerHandle) -> list[APIOperation]:
    """Every operation of the fuzz server's own /openapi.json, minus the slow ones."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", timeout=10)
    for operation in SLOW_OPERATIONS:
        schema = schema.exclude(**operation)
    return [result.ok() for result in schema.get_all_operations()]


def _keep_model_loaded(case: schemathesis.Case) -> None:
    """Pin a generated `keep_alive` (generation bodies, the load body) to -1, "stay loaded".

    `keep_alive: 0` unloads the model after the request, so the next one reloads it (seconds): the budget
    would go to reloads. Its parsing is covered by the unit tests of `units.py` and the residency tests.
    """
    if isinstance(case.body, dict) and "keep_alive" in case.body:
        case.body["keep_alive"] = -1


def _fuzz(operation: APIOperation, mode: GenerationMode, base_url: str, bad_ids: tuple[str, ...]) -> None:
    """EXAMPLES generated requests to `operation`; hypothesis shrinks a failing one and raises it."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        _keep_model_loaded(case)
        # The header every admin client sends (tests/support/checks.py): without it a bodiless admin POST
        # stops at 400 admin_header_required and the fuzzer never reaches the handler.
        try:
            response = case.call(base_url=base_url, headers=ADMIN_HEADERS, timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # a hang or a dropped connection: say which request
            exc.add_note(f"Reproduce with: {case.as_curl_command()}")
            raise
        if _documented_server_error(case, response, bad_ids):
            return
        case.validate_response(response, checks=CHECKS)

    run()


# schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) cannot run on pytest 9.2 (it
# sets `Function._nodeid`, gone there), so each operation is driven through its hypothesis strategy here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_fuzz_every_operation(
    mode: GenerationMode, operations: list[APIOperation], fuzz_server: ServerHandle, models_folder: ModelsFolder
) -> None:
    """Valid (positive) or schema-violating (negative) requests to every operation: the three checks hold."""
    failures: list[str] = []
    for operation in operations:
        try:
            _fuzz(operation, mode, fuzz_server.base_url, models_folder.bad_ids)
        except Unsatisfiable:
            # Nothing to violate (no parameters, or only a path string): no negative case exists.
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request could be generated"
        except Exception as exc:  # every operation runs; all failures are reported together
            failures.append(f"{operation.label}: {exc!r}\n{_notes(exc)}")
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)


def _notes(exc: BaseException) -> str:
    """Hypothesis' falsifying example and schemathesis' reproduction (curl), from the exception's notes."""
    parts = list(getattr(exc, "__notes__", []))
    for inner in getattr(exc, "exceptions", []):
        parts.append(str(inner))
        parts.extend(getattr(inner, "__notes__", []))
    return "\n".join(parts)


def test_hostile_model_ids_are_the_only_allowed_5xx(
    operations: list[APIOperation], fuzz_server: ServerHandle, models_folder: ModelsFolder
) -> None:
    """The one exemption is real and narrow: a hostile id gets 500 model_load_failed, in OpenAI's shape."""
    load = next(operation for operation in operations if operation.label == "POST /api/models/{model_id}/load")
    for bad_id in models_folder.bad_ids:
        case = load.Case(path_parameters={"model_id": bad_id})
        response = case.call(base_url=fuzz_server.base_url, headers=ADMIN_HEADERS, timeout=REQUEST_TIMEOUT)
        assert _documented_server_error(case, response, models_folder.bad_ids), response.text
        case.validate_response(response, checks=[openai_error_shape])
        # The same answer for any other id is not exempt.
        assert not _documented_server_error(
            load.Case(path_parameters={"model_id": "x"}), response, models_folder.bad_ids
        )
