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
    """The server cannot serve right now (no model ready, shutting down); retrying later may work."""

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class EngineError(PensieveError):
    """The local engine failed while generating."""

    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"
