"""The domain's errors. Services raise them; the REST API, the dashboard and the admin
turn each into its own response (core/rest.py gives the JSON shape)."""

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class ValidationFailed(ServiceError):
    status = 400
    code = "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> "ValidationFailed":
        return cls(f"{name}: {message}", fields={name: [message]})


class NotAuthenticated(ServiceError):
    status = 401
    code = "not_authenticated"


class PermissionDenied(ServiceError):
    status = 403
    code = "permission_denied"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class LimitReached(Conflict):
    code = "limit_reached"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
