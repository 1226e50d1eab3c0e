"""Errors as data: every error the gateway itself produces, with its HTTP status and
Anthropic error type, rendered once in Anthropic's shape.

Anthropic's status/type pairs: https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """Root of the gateway's own errors; carries what the client will see."""

    status: int = 500
    error_type: str = "api_error"
    # What the usage row and the log line record; the error type unless a subclass is
    # more specific than Anthropic's few types.
    error_class: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    @property
    def recorded_class(self) -> str:
        return self.error_class or self.error_type

    def body(self, request_id: str) -> bytes:
        return error_body(self.error_type, self.message, request_id)


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


# --- the caller's fault (4xx) -------------------------------------------------------


class ClientError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class InvalidRequest(ClientError):
    pass


class AuthenticationFailed(ClientError):
    status = 401
    error_type = "authentication_error"


class PermissionDenied(ClientError):
    status = 403
    error_type = "permission_error"


class NotFound(ClientError):
    status = 404
    error_type = "not_found_error"


class RequestTooLarge(ClientError):
    status = 413
    error_type = "request_too_large"


class RateLimited(ClientError):
    status = 429
    error_type = "rate_limit_error"


# --- an upstream's or our own fault (5xx) -------------------------------------------


class ServerError(GatewayError):
    """Not the caller's fault: the root of every 5xx, ours and the upstreams'."""

    status = 500
    error_type = "api_error"


class InternalError(ServerError):
    """The gateway's own failure."""

    status = 500
    error_type = "api_error"


class ServiceUnavailable(ServerError):
    """The gateway cannot serve right now (its database is away, or a key's plan circuit
    is open with no fallback); `retry-after` says when to try again."""

    status = 503
    error_type = "overloaded_error"


class UpstreamError(ServerError):
    """An upstream (the plan or Bedrock) failed."""

    status = 502
    error_type = "api_error"


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached or did not answer in time."""

    status = 502
    error_type = "api_error"


class UpstreamFailed(UpstreamError):
    """The upstream answered with a failure of its own (a model stream error or timeout)."""

    status = 500
    error_type = "api_error"


class Overloaded(UpstreamError):
    status = 529
    error_type = "overloaded_error"


class FallbackAccessDenied(UpstreamError):
    """Bedrock refused the gateway's own credentials or model access. The developer cannot
    fix that, so it is never a 401/403 (Claude Code would ask them to log in again): a 500
    that tells them the operator must act (SPEC §4)."""

    status = 500
    error_type = "api_error"
    error_class = "bedrock_access_denied"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(
            "The gateway's Bedrock fallback was refused its credentials or model access; "
            f"the gateway's operator must fix this ({message}).",
            headers=headers,
        )


# --- the service layer's refusals (CLI and admin API; never on the relay path) -------


class ValidationFailed(InvalidRequest):
    """A service argument is invalid; `field` names it (the admin API answers 422)."""

    status = 422

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


class Conflict(ClientError):
    """A duplicate name, or an object whose state forbids the change (409)."""

    status = 409
