"""Domain errors of the service and their one mapping to HTTP status codes (design §3)."""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error the service reports to a caller on purpose."""

    status = 500
    type = "internal_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}


class MalformedRequest(BerthError):
    status, type = 400, "malformed_request"


class Unauthorized(BerthError):
    status, type = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class ModelNotFound(BerthError):
    status, type = 404, "model_not_found"


class NotFound(BerthError):
    status, type = 404, "not_found"


class PayloadTooLarge(BerthError):
    status, type = 413, "payload_too_large"


class InvalidInput(BerthError):
    """Validation failure: empty or oversized input, too many items, wrong task, too long."""

    status, type = 422, "invalid_request"

    def __init__(self, message: str, param: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message, param)
        # Metric label for berth_rejected_total (invalid | too_long).
        self.reason = reason


class Overloaded(BerthError):
    status, type = 429, "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class NotReady(BerthError):
    status, type = 503, "not_ready"


class ShuttingDown(NotReady):
    type = "shutting_down"


class DeadlineExceeded(BerthError):
    status, type = 504, "deadline_exceeded"


def error_body(err_type: str, message: str, param: str | None = None) -> dict:
    """The one error body of the API."""
    return {"error": {"type": err_type, "message": message, "param": param}}


# Every status a task route can answer besides 200, for the OpenAPI document.
ERROR_STATUSES: dict[int, str] = {
    400: "Malformed JSON",
    401: "API key configured and missing or wrong",
    404: "Unknown model name",
    413: "Body larger than the configured limit",
    422: "Invalid input: empty, too many items, too long with truncate=false, wrong task",
    429: "Queue full; retry after the Retry-After header's seconds",
    500: "A bug; the body carries the request id, the log the traceback",
    503: "Not ready yet, or shutting down",
    504: "The request's deadline passed while it was queued",
}
