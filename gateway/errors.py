"""The domain's errors. Services raise them; the REST API, the dashboard and the admin
turn each into its own response (see gateway/api.py for the JSON shape)."""


class ServiceError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
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

    def __init__(self, message: str, *, retry_after: int, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GatewayError(Exception):
    """An error of the /v1 gateway, answered in OpenAI's shape
    {"error": {"message", "type", "param", "code"}}."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "insufficient_quota",
        403: "permission_error",
        404: "invalid_request_error",
        405: "invalid_request_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        502: "api_error",
        503: "api_error",
        504: "api_error",
    }

    def __init__(self, status: int, message: str, code: str, *, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        kind = self.TYPES.get(self.status, "api_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
