"""The one exception tree of vmx.

::

    VmxError
    ├── ConfigError              the config file or store is invalid (carries the key path)
    ├── PluginError              a plugin is missing, broken or misbehaving
    ├── AuditStoreError          the audit database failed (rows are spooled, never lost)
    ├── CredentialError          a credential ciphertext cannot be opened (or sealed)
    ├── ConfigStoreError         the config database failed or refused a change
    ├── ProviderError            one upstream leg failed; the pipeline decides whether to fail over
    │   ├── UpstreamHTTPError        the upstream answered a non-2xx status
    │   ├── UpstreamConnectionError  could not connect, or the connection dropped
    │   ├── UpstreamTimeoutError     the leg's own timeout passed
    │   ├── UpstreamStalledError     a stream sent nothing for stream_idle_timeout_ms
    │   ├── UpstreamProtocolError    a non-JSON body, an HTML error page, a truncated stream
    │   └── CountNotSupported        the upstream cannot count this request's tokens natively
    └── RequestError             what the client is told; each maps to one row of DESIGN §6
        ├── InvalidRequest (400)         BlockedByRouting (400)
        ├── AuthenticationFailed (401)   PermissionDenied (403)   NotFound (404)
        ├── Conflict (409)               PreconditionFailed (412)   (management API)
        ├── RequestTooLarge (413)
        ├── CapacityExhausted (429)      PrioritizationDenied (429)
        ├── UpstreamRejected (the upstream's own 4xx, passed on)
        ├── UpstreamFailed (502)         UpstreamTimeout (504)

Driver errors (aiohttp, botocore, redis, psycopg) are wrapped where they are raised, so no
caller ever has to catch a driver's exception type.  Messages never contain secrets: they are
built from names and statuses, never from credentials or request bodies.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuditStoreError",
    "AuthenticationFailed",
    "BlockedByRouting",
    "CapacityExhausted",
    "ConfigError",
    "ConfigStoreError",
    "Conflict",
    "CountNotSupported",
    "CredentialError",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "PluginError",
    "PreconditionFailed",
    "PrioritizationDenied",
    "ProviderError",
    "RequestError",
    "RequestTooLarge",
    "UpstreamConnectionError",
    "UpstreamFailed",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamRejected",
    "UpstreamStalledError",
    "UpstreamTimeout",
    "UpstreamTimeoutError",
    "VmxError",
]


class VmxError(Exception):
    """Base of every exception vmx raises on purpose."""


class ConfigError(VmxError):
    """The configuration is invalid; ``errors`` lists ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]] | str, path: str = "$") -> None:
        if isinstance(errors, str):
            errors = [(path, errors)]
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))


class PluginError(VmxError):
    """A plugin could not be loaded or returned something unusable."""


class AuditStoreError(VmxError):
    """The audit database (SQLite, Postgres) could not be reached or refused a statement.

    Raised instead of the driver's own exception; the message names the operation and the
    driver's error class, never the connection string (it may hold a password)."""


class CredentialError(VmxError):
    """A ``vmx:enc:v1:`` value could not be decrypted (wrong key, wrong connection, tampered,
    KMS refused) or a secret could not be encrypted.  The message never holds the value."""


class ConfigStoreError(VmxError):
    """The config database could not be reached or refused a statement (driver errors are
    wrapped: the message names the operation and SQLSTATE, never the DSN)."""


# ---------------------------------------------------------------------------------------------
# Per-leg provider failures.  These never reach a client directly: the pipeline either fails
# over or folds them into a RequestError.


class ProviderError(VmxError):
    """One upstream call failed.  ``reason`` is a short machine-readable word for audit."""

    reason = "provider_error"
    #: Whether a fallback leg should be tried after this failure (DESIGN §9).
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class UpstreamHTTPError(ProviderError):
    """The upstream answered with a non-2xx status."""

    reason = "http_error"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.error_type = error_type
        self.error_code = error_code
        self.param = param
        # 429 and 5xx are the upstream's problem; other 4xx are the client's (DESIGN §9) --
        # except 401/403: the client never chose the upstream credential, so a refused one is
        # the connection's fault, and another connection may well answer.
        self.retryable = status in (401, 403, 408, 429) or status >= 500


class UpstreamConnectionError(ProviderError):
    reason = "connection_error"


class UpstreamTimeoutError(ProviderError):
    reason = "timeout"


class UpstreamStalledError(ProviderError):
    reason = "stream_stalled"


class UpstreamProtocolError(ProviderError):
    reason = "protocol_error"


class CountNotSupported(ProviderError):
    """Raised by a client's ``count_tokens`` when the upstream cannot count this request (the
    model has no native counter, or the counter refuses a kind of input the model itself
    takes).  The request is not wrong, so the count endpoint answers with its estimate.

    ``model_wide``: the model cannot count anything, so the gateway stops asking for it for a
    while (``pipeline.count.UNSUPPORTED_TTL``) instead of making one failing call per count."""

    reason = "count_not_supported"
    retryable = False

    def __init__(self, message: str, *, model_wide: bool = False) -> None:
        super().__init__(message)
        self.model_wide = model_wide


# ---------------------------------------------------------------------------------------------
# What the client sees.


class RequestError(VmxError):
    """An error answered to the client in its own dialect (DESIGN §6)."""

    status = 500
    openai_code = "internal_error"
    openai_type = "server_error"
    anthropic_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequest(RequestError):
    status = 400
    openai_code = "invalid_request"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class BlockedByRouting(RequestError):
    status = 400
    openai_code = "blocked_by_routing_condition"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class AuthenticationFailed(RequestError):
    status = 401
    openai_code = "invalid_api_key"
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"


class PermissionDenied(RequestError):
    status = 403
    openai_code = "permission_denied"
    openai_type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(RequestError):
    status = 404
    openai_code = "not_found"
    openai_type = "not_found_error"
    anthropic_type = "not_found_error"


class Conflict(RequestError):
    """The object already exists (a management ``POST`` of a taken name)."""

    status = 409
    openai_code = "conflict"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class PreconditionFailed(RequestError):
    """``If-Match`` named a version that is no longer current: someone changed it first."""

    status = 412
    openai_code = "precondition_failed"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class RequestTooLarge(RequestError):
    status = 413
    openai_code = "request_too_large"
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class CapacityExhausted(RequestError):
    status = 429
    openai_code = "resource_exhausted"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"


class PrioritizationDenied(CapacityExhausted):
    openai_code = "prioritization_gate_denied"


class UpstreamRejected(RequestError):
    """The upstream refused the request as the client's fault (a 4xx that is not failed over).

    The status is the upstream's, so a client sees the same 400/404/422 it would have seen
    talking to the provider directly.
    """

    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"

    def __init__(self, status: int, message: str, *, code: str | None, param: str | None) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.openai_code = code or "upstream_rejected"
        if status == 401:
            self.anthropic_type = "authentication_error"
        elif status == 403:
            self.anthropic_type = "permission_error"
        elif status == 404:
            self.anthropic_type = "not_found_error"


class UpstreamFailed(RequestError):
    status = 502
    openai_code = "upstream_error"
    openai_type = "server_error"
    anthropic_type = "api_error"


class UpstreamTimeout(RequestError):
    status = 504
    openai_code = "upstream_timeout"
    openai_type = "server_error"
    anthropic_type = "timeout_error"
