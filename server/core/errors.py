"""The project's own error hierarchy. Connectors translate driver errors into these in one
place each; the API maps them to HTTP once."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """`code` is what code reads, `message` what people read; `detail` holds the fields of the
    code (the error answer carries them beside both, e.g. a quota's `limit`), `fields` the
    problems of a body's fields (validation)."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None,
                 detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields
        self.detail = detail or {}


class ValidationError(AppError):
    status = 400
    code = "invalid_fields"

    def __init__(self, fields: dict[str, str], message: str = "Some fields are invalid."):
        super().__init__(message, fields=fields)


class BadBody(AppError):
    """The body is not JSON we accept (malformed, NaN, duplicate keys, too deep)."""

    status = 400
    code = "invalid_body"


class UnsupportedMedia(AppError):
    status = 415
    code = "unsupported_media_type"


class NotFound(AppError):
    status = 404
    code = "not_found"


class StateConflict(AppError):
    """A request the store's state does not allow now (409). Not a merge conflict: that is a
    record of the conflict ledger (`list_conflicts`)."""

    status = 409
    code = "conflict"


class SyncBusy(StateConflict):
    """A sync round is running already."""

    code = "sync_running"


class PreconditionFailed(AppError):
    status = 412
    code = "precondition_failed"

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current


class StoreUnavailable(AppError):
    """The store (or the hub) cannot be reached or answered with an error."""

    status = 503
    code = "store_unavailable"


class HubRefused(StoreUnavailable):
    """The hub refused this device (a token unknown or revoked, an origin not its own);
    `reason` is the hub's error code (`origin_not_yours`, `token_revoked`, ...)."""

    code = "hub_refused"

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class Unauthorized(AppError):
    """No token, an unknown one, or a revoked one (the hub server)."""

    status = 401
    code = "unauthorized"


class TooManyRequests(AppError):
    """A device over one of its quotas (the hub server); `retry_after` seconds, when it may try again."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1,
                 detail: dict[str, Any] | None = None):
        super().__init__(message, code=code, detail={**(detail or {}), "retryAfterSeconds": retry_after})
        self.retry_after = retry_after


class Forbidden(AppError):
    """A known device asking for what its token does not allow (the hub server)."""

    status = 403
    code = "forbidden"
