"""The UI's only way to the server: httpx for the admin endpoints, the `openai` SDK for chat.

Every failure becomes a `ServerError` whose message is plain words a user can act on ("cannot reach
the server at ... — start it with ./run_app.sh"), so a page shows it and keeps working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import openai

from pensieve.ui.client_records import RecordCalls

CONNECT_TIMEOUT = 3.0
ADMIN_TIMEOUT = 30.0
GENERATION_TIMEOUT = 300.0


class ServerError(Exception):
    """A call to the server failed; `str(error)` is a plain-words explanation."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def unreachable(self) -> bool:
        """True when the server did not answer at all (down, wrong address, timed out)."""
        return self.status is None


def _error_message(status: int, body: Any, fallback: str) -> tuple[str, str | None]:
    """The message and code of an OpenAI-shaped error body, or `fallback`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]), error.get("code")
    return fallback or f"The server answered HTTP {status}.", None


def _from_status(status: int, body: Any, text: str = "") -> ServerError:
    message, code = _error_message(status, body, text.strip()[:300])
    if code in ("admin_key_required", "admin_local_only") or (status == 401 and "admin" in message.lower()):
        message = (
            "This needs admin rights on the server: set PENSIEVE_ADMIN_KEY in the UI's .env to the server's admin "
            f"key. ({message})"
        )
    elif status == 401:
        message = f"The server refused the API key: set PENSIEVE_API_KEY in .env to the server's key. ({message})"
    return ServerError(message, status=status, code=code)


def _unreachable(base_url: str, exc: Exception) -> ServerError:
    if isinstance(exc, httpx.TimeoutException | openai.APITimeoutError):
        return ServerError(f"The Pensieve server at {base_url} did not answer in time. It may be busy: try again.")
    return ServerError(
        f"Cannot reach the Pensieve server at {base_url}. Is it running? Start it with ./run_app.sh "
        "(or `pensieve serve`); the UI keeps working and picks it up when it is back."
    )


@dataclass
class ChatOutcome:
    """What the UI shows under an answer: where it ran, why, and how fast."""

    route: str | None = None
    reason: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    first_token_seconds: float | None = None
    elapsed_seconds: float = 0.0
    chunks: int = 0
    session_id: str | None = None  # x-pensieve-session: the conversation the server stored the turn in
    trimmed: int = 0  # x-pensieve-trimmed-messages: stored messages the prompt left out
    citations: str | None = None  # x-pensieve-citations: `file-1 page 7 (3.21), ...` (ids only)
    confidence: float | None = None  # x-pensieve-confidence: how sure the local model was (cascaded streams)
    tier: str | None = None  # x-pensieve-tier: local, trusted (a private_ok provider) or public
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens over the time from the first token to the last."""
        tokens = self.completion_tokens if self.completion_tokens is not None else self.chunks
        if not tokens or self.first_token_seconds is None:
            return None
        generating = self.elapsed_seconds - self.first_token_seconds
        return tokens / generating if generating > 0 else None


class ChatStream:
    """A streamed chat completion: iterate for text pieces; `outcome` holds the route headers and usage.

    Use it as a context manager; leaving the block early closes the HTTP stream, which makes the
    server stop generating (that is how the UI's stop button works).
    """

    def __init__(self, sdk: openai.OpenAI, base_url: str, request: dict[str, Any]) -> None:
        self._sdk = sdk
        self._base_url = base_url
        self._request = request
        self._manager: Any = None
        self._response: Any = None
        self._started = 0.0
        self.outcome = ChatOutcome()

    def __enter__(self) -> ChatStream:
        self._started = time.perf_counter()
        self._manager = self._sdk.chat.completions.with_streaming_response.create(**self._request)
        try:
            self._response = self._manager.__enter__()
        except openai.APIStatusError as exc:
            raise _from_status(exc.status_code, exc.body and {"error": exc.body}, exc.message) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise _unreachable(self._base_url, exc) from exc
        headers = self._response.headers
        self.outcome.route = headers.get("x-pensieve-route")
        self.outcome.reason = headers.get("x-pensieve-reason")
        self.outcome.model = headers.get("x-pensieve-model")
        self.outcome.session_id = headers.get("x-pensieve-session")
        trimmed = headers.get("x-pensieve-trimmed-messages", "0")
        self.outcome.trimmed = int(trimmed) if trimmed.isdigit() else 0
        self.outcome.citations = headers.get("x-pensieve-citations")
        self.outcome.confidence = _probability(headers.get("x-pensieve-confidence"))
        self.outcome.tier = headers.get("x-pensieve-tier")
        return self

    def __iter__(self) -> Iterator[str]:
        """The answer's text pieces, as they arrive."""
        try:
            for chunk in self._response.parse():
                if chunk.usage is not None:
                    self.outcome.prompt_tokens = chunk.usage.prompt_tokens
                    self.outcome.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.finish_reason:
                        self.outcome.finish_reason = choice.finish_reason
                    if choice.delta.content:
                        if self.outcome.first_token_seconds is None:
                            self.outcome.first_token_seconds = time.perf_counter() - self._started
                        self.outcome.chunks += 1
                        yield choice.delta.content
        except openai.APIStatusError as exc:
            raise _from_status(exc.status_code, {"error": exc.body}, exc.message) from exc
        except openai.APIError as exc:  # an error event after streaming started
            raise ServerError(f"The answer was cut short: {exc.message}", code="stream_error") from exc
        except Exception as exc:  # the SDK's transport errors (its own httpx) while reading the stream
            raise ServerError(f"The connection to the server dropped during the answer ({exc}).") from exc
        finally:
            self.outcome.elapsed_seconds = time.perf_counter() - self._started

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.outcome.elapsed_seconds = time.perf_counter() - self._started
        if self._manager is not None:
            self._manager.__exit__(kind, error, trace)


class PensieveClient(RecordCalls):
    """Typed calls to a Pensieve server; every method raises `ServerError` in plain words.

    The sessions and files calls are in `RecordCalls` (client_records.py).
    """

    def __init__(self, base_url: str, api_key: str | None = None, admin_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # The admin key also opens the inference routes; the custom header marks admin calls as no browser
        # "simple request" (the server refuses those).
        key = admin_key or api_key
        headers = {"x-requested-with": "pensieve-ui"} | ({"authorization": f"Bearer {key}"} if key else {})
        timeout = httpx.Timeout(ADMIN_TIMEOUT, connect=CONNECT_TIMEOUT)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._sdk = openai.OpenAI(
            base_url=f"{self.base_url}/v1",
            api_key=api_key or admin_key or "not-needed",
            max_retries=0,
            timeout=openai.Timeout(GENERATION_TIMEOUT, connect=CONNECT_TIMEOUT),
        )

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._sdk.close()

    def _call(self, method: str, path: str, *, ok_statuses: tuple[int, ...] = (), **options: Any) -> Any:
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
        if response.is_success or response.status_code in ok_statuses:
            return body
        raise _from_status(response.status_code, body, response.text)

    def _raw(self, method: str, path: str, **options: Any) -> httpx.Response:
        """A call whose answer is not JSON (a download, plain text): the response, or a `ServerError`."""
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        if not response.is_success:
            raise _from_status(response.status_code, _json_or_none(response.text), response.text)
        return response

    # --- Status ---------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /health: the version while the server is up."""
        return dict(self._call("GET", "/health", timeout=CONNECT_TIMEOUT))

    def ready(self) -> dict[str, Any]:
        """GET /ready: `status` is `ready` or `not_ready` (with `error.message`)."""
        return dict(self._call("GET", "/ready", ok_statuses=(503,)))

    def system(self) -> dict[str, Any]:
        """GET /api/system: version, uptime, memory (RSS), CPU, loaded models."""
        return dict(self._call("GET", "/api/system"))

    # --- Models ---------------------------------------------------------------------------------

    def chat_models(self) -> list[dict[str, Any]]:
        """GET /v1/models: usable local models, then `auto`, then cloud models `<provider>/<model>` (the files
        that cannot serve, listed last by the server, are left out: /api/models shows them with the reason)."""
        cards = self._call("GET", "/v1/models")["data"]
        return [card for card in cards if card.get("details", {}).get("usable", True)]

    def model_files(self) -> dict[str, Any]:
        """GET /api/models: every .gguf (usable or not, with the reason), load state and engine stats."""
        return dict(self._call("GET", "/api/models"))

    def running_models(self) -> dict[str, Any]:
        """GET /api/ps: models in memory (`models`) and model failures (`failures`: load failures, last crashes)."""
        return dict(self._call("GET", "/api/ps"))

    def load_model(self, model_id: str) -> dict[str, Any]:
        """POST /api/models/{id}/load."""
        return dict(self._call("POST", f"/api/models/{model_id}/load", timeout=GENERATION_TIMEOUT))

    def unload_model(self, model_id: str) -> dict[str, Any]:
        """POST /api/models/{id}/unload."""
        return dict(self._call("POST", f"/api/models/{model_id}/unload"))

    def install_default_model(self) -> Iterator[dict[str, Any]]:
        """POST /api/models/install-default: progress events `{stage, done, total}`, then `{status, path}`."""
        try:
            with self._http.stream("POST", "/api/models/install-default", timeout=GENERATION_TIMEOUT) as response:
                if not response.is_success:
                    response.read()
                    raise _from_status(response.status_code, _json_or_none(response.text), response.text)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise _from_status(500, event, "")
                    yield event
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def pull_model(self, repo: str, choice: str | None = None) -> dict[str, Any]:
        """POST /api/models/pull: start downloading `repo` (`choice`: a quantization tag or a file name); the job."""
        body: dict[str, Any] = {"repo": repo}
        if choice:
            body["file" if choice.lower().endswith(".gguf") else "quant"] = choice
        return dict(self._call("POST", "/api/models/pull", json=body, timeout=GENERATION_TIMEOUT))

    def pull_job(self, job_id: str) -> dict[str, Any]:
        """GET /api/models/pulls/{id}: status, done_bytes, total_bytes, bytes_per_second, error."""
        return dict(self._call("GET", f"/api/models/pulls/{job_id}"))

    def delete_model(self, model_id: str) -> dict[str, Any]:
        """DELETE /api/models/{id}: remove the model file (an idle loaded model is unloaded first)."""
        return dict(self._call("DELETE", f"/api/models/{model_id}"))

    # --- Routing --------------------------------------------------------------------------------

    def burst_stats(self, recent: int = 50) -> dict[str, Any]:
        """GET /api/burst/stats: routes and reasons, spend vs caps, saved, tokens, local load, circuits, recent."""
        return dict(self._call("GET", "/api/burst/stats", params={"recent": recent}))

    def reset_circuits(self, provider: str | None = None) -> dict[str, Any]:
        """POST /api/burst/circuits/reset (one provider, or all)."""
        params = {"provider": provider} if provider else {}
        return dict(self._call("POST", "/api/burst/circuits/reset", params=params))

    def explain_route(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /api/route/explain: where a request would run and why, without running it."""
        return dict(self._call("POST", "/api/route/explain", json=payload))

    # --- Settings -------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """GET /api/admin/settings: values (secrets masked), groups, types, descriptions."""
        return dict(self._call("GET", "/api/admin/settings"))

    def change_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH /api/admin/settings: apply `{PENSIEVE_KEY: value}` to the running server (not to .env)."""
        return dict(self._call("PATCH", "/api/admin/settings", json=changes))

    def save_settings(self) -> str:
        """POST /api/admin/settings/save: write the running settings to .env; returns the file's path."""
        return str(self._call("POST", "/api/admin/settings/save")["saved"])

    # --- Chat -----------------------------------------------------------------------------------

    def stream_chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        session_id: str | None = None,
        file_ids: list[str] | None = None,
        **parameters: float | int | None,
    ) -> ChatStream:
        """A streamed chat completion (usage in the last chunk); open it with `with`.

        With `session_id`, send only the new message: the server puts the stored conversation in front and
        stores the turn. `file_ids` names uploaded files whose best passages go into the prompt.
        """
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        request.update({key: value for key, value in parameters.items() if value is not None})
        # Pensieve's own fields: the SDK passes them through unchanged in extra_body.
        extra = {"session_id": session_id, "file_ids": file_ids or None}
        if any(value is not None for value in extra.values()):
            request["extra_body"] = {key: value for key, value in extra.items() if value is not None}
        return ChatStream(self._sdk, self.base_url, request)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _probability(value: str | None) -> float | None:
    """A 0-1 header value, or None when absent or not a number in that range."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0.0 <= number <= 1.0 else None
