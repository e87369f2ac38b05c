"""The error of the /v1 gateway, in OpenAI's error shape."""

from typing import Any


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

    def __init__(self, status: int, message: str, code: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "api_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
