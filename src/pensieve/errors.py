"""One error hierarchy for everything a client can see; each maps to OpenAI's error JSON.

Adapters translate foreign exceptions into these (`raise X from exc`); the HTTP layer turns them into
`{"error": {"message", "type", "param", "code"}}` with the status code each class carries.
"""

from __future__ import annotations

from typing import Any


class PensieveError(Exception):
    """Base of every error Pensieve reports to a client."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-shaped JSON body for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(PensieveError):
    """The request is malformed or asks for something impossible (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """Prompt plus requested completion do not fit the model's context window."""

    default_code = "context_length_exceeded"

    @classmethod
    def for_request(
        cls, *, n_ctx: int, prompt_tokens: int, requested: int | None, chat: bool, note: str = ""
    ) -> ContextLengthExceededError:
        """The error in OpenAI's own wording (SDKs and users recognise it), plus an optional note."""
        where = "messages" if chat else "prompt"
        asked = prompt_tokens + (requested or 0)
        message = (
            f"This model's maximum context length is {n_ctx} tokens. However, you requested {asked} tokens "
            f"({prompt_tokens} in the {where}, {requested or 0} in the completion). "
            f"Please reduce the length of the {where} or completion."
        )
        return cls(f"{message} {note}".strip(), param=where)


class UnsupportedParameterError(InvalidRequestError):
    """A parameter OpenAI defines that this model or server cannot honour."""

    default_code = "unsupported_parameter"


class AuthenticationError(PensieveError):
    """Missing or wrong API key (HTTP 401)."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFoundError(PensieveError):
    """A route or resource that does not exist (HTTP 404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    """The requested model id is not installed."""

    default_code = "model_not_found"


class PayloadTooLargeError(PensieveError):
    """The request body exceeds the configured limit (HTTP 413)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class ModelLoadError(PensieveError):
    """A model file exists but cannot be loaded: missing, not GGUF, truncated or corrupt.

    Retrying cannot help until the file changes, so the response tells SDKs not to retry.
    """

    status_code = 500
    error_type = "server_error"
    default_code = "model_load_failed"

    def __init__(self, message: str, *, param: str | None = "model", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code, headers={"x-should-retry": "false"})


class ServiceUnavailableError(PensieveError):
    """The server cannot serve right now (no model ready, shutting down); retrying later may work.

    `retry_after_seconds`, when known, becomes a `Retry-After` header (SDKs honour it when retrying).
    """

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        headers = {"retry-after": str(max(1, round(retry_after_seconds)))} if retry_after_seconds is not None else None
        super().__init__(message, param=param, code=code, headers=headers)
        self.retry_after_seconds = retry_after_seconds


class RequestTimeoutError(PensieveError):
    """The request ran past the server's deadline (PENSIEVE_REQUEST_TIMEOUT_SECONDS) and was stopped (HTTP 504).

    The same request would most likely time out again, so SDKs are told not to retry it.
    """

    status_code = 504
    error_type = "server_error"
    default_code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "false"})


class EngineError(PensieveError):
    """The local engine failed while generating."""

    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"


class WorkerCrashedError(EngineError):
    """The model's worker process died (a signal such as SIGILL, or an unexpected exit) while serving.

    The message says how it died and the likely cause; the next request starts a new worker.
    """

    default_code = "worker_crashed"


class RateLimitedError(PensieveError):
    """Too many requests queued for a model (HTTP 429); `Retry-After` says when to try again."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: float, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"retry-after": str(max(1, round(retry_after_seconds)))})
        self.retry_after_seconds = retry_after_seconds


class PrivateDataBlockedError(PensieveError):
    """The request holds data marked private and may not leave the machine, but only the cloud could serve it."""

    status_code = 403
    error_type = "invalid_request_error"
    default_code = "private_data_blocked"


class ForbiddenRequestError(PensieveError):
    """The request comes from where it may not: a Host name not allowed (DNS rebinding) or another site."""

    status_code = 403
    error_type = "permission_error"
    default_code = "forbidden"


class CloudError(PensieveError):
    """A cloud provider failed; `retryable` says whether another route (local) may be tried instead.

    `retry_after_seconds` carries the provider's Retry-After, which the circuit breaker honours.
    """

    status_code = 502
    error_type = "server_error"
    default_code = "cloud_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool = True,
        retry_after_seconds: float | None = None,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        headers = {"retry-after": str(max(1, round(retry_after_seconds)))} if retry_after_seconds else None
        super().__init__(message, code=code, param=param, headers=headers)
        self.provider = provider
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds
        if status_code is not None:
            self.status_code = status_code


class CloudUnavailableError(CloudError):
    """The provider cannot be reached, timed out, is rate limiting us or its circuit breaker is open (503)."""

    status_code = 503
    default_code = "cloud_unavailable"


class UnsupportedFileTypeError(PensieveError):
    """An uploaded file's content is of a kind Pensieve does not accept, or cannot be read (HTTP 415)."""

    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_file_type"
