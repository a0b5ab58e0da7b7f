"""How every error is answered, on every transport: one table keyed by the Inferox error code.

An error reaching a client is always a typed :class:`~inferox.core.errors.InferoxError`: the
library's own (``INVALID_INPUT``, ``QUEUE_FULL`` …) or one of the conditions only a server meets,
defined here (a body over the limit, a missing token, a client that went away, a request over the
server's per-request limits). :data:`ERROR_STATUS` gives each code its HTTP status (V2 REST, the
OpenAI API) *and* its gRPC status code, so the transports never map errors themselves; a code not
in the table (a plugin's own) falls back to its class's ``http_status`` and Google's HTTP↔gRPC
mapping (AIP-193, :data:`GRPC_STATUS_FOR_HTTP`).

Overload is always ``RESOURCE_EXHAUSTED`` (HTTP 429 or 503) with a retry hint: :func:`retry_after_s`
gives the whole seconds a client should wait (``Retry-After`` over HTTP, trailing ``retry-after``
metadata over gRPC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from inferox.core.errors import InferoxError, InvalidInputError

__all__ = [
    "CLIENT_DISCONNECTED",
    "ERROR_STATUS",
    "GRPC_STATUS_FOR_HTTP",
    "INTERNAL",
    "ClientDisconnectedError",
    "ErrorStatus",
    "InternalServerError",
    "PayloadTooLargeError",
    "RequestLimitError",
    "UnauthorizedError",
    "bounded",
    "error_headers",
    "error_status",
    "retry_after_s",
    "v2_error_body",
]

INTERNAL = "INTERNAL"
CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"

#: Longest user-supplied text (a model name, an output name) an error message repeats.
MAX_ECHO = 80


def bounded(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)``, cut to ``limit`` characters: names from the wire are echoed, never unbounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


class PayloadTooLargeError(InvalidInputError):
    """A request body (or message) larger than the server accepts."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413

    def __init__(self, message: str, *, limit: int, name: str = "body", actual: int | None = None) -> None:
        super().__init__(message, name=name, expected=f"at most {limit} bytes", actual=actual)
        self.limit = limit


class RequestLimitError(InvalidInputError):
    """A request over one of the server's per-request limits (rows, tokens, text bytes): refused
    before any work, naming the limit and its setting."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413

    def __init__(self, what: str, *, actual: int, limit: int, setting: str, name: str | None = None) -> None:
        super().__init__(
            f"request has {actual} {what}; the server accepts at most {limit} per request ({setting})",
            name=name or setting,
            expected=f"at most {limit} {what}",
            actual=actual,
        )
        self.limit = limit
        self.setting = setting


class UnauthorizedError(InferoxError, PermissionError):
    """A protected endpoint called without the server's bearer token."""

    code = "UNAUTHORIZED"
    http_status = 401

    def __init__(self, message: str = "missing or invalid bearer token") -> None:
        super().__init__(message)


class ClientDisconnectedError(InferoxError, ConnectionError):
    """The client went away (closed the connection, cancelled the call) before its answer."""

    code = CLIENT_DISCONNECTED
    http_status = 499

    def __init__(self, message: str = "the client disconnected before the response") -> None:
        super().__init__(message)


class InternalServerError(InferoxError, RuntimeError):
    """An unexpected exception inside the server (a bug): the client sees only its type."""

    code = INTERNAL
    http_status = 500


#: HTTP status → gRPC status code name (Google's AIP-193 table), for codes not in :data:`ERROR_STATUS`.
GRPC_STATUS_FOR_HTTP: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    410: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    507: "RESOURCE_EXHAUSTED",
}


@dataclass(frozen=True)
class ErrorStatus:
    """How one error code is answered: the HTTP status and the gRPC status code name."""

    http: int
    grpc: str


#: Inferox error code → how it is answered on HTTP (V2 REST, OpenAI, TEI) and on gRPC. The one table.
ERROR_STATUS: dict[str, ErrorStatus] = {
    code: ErrorStatus(http, grpc)
    for code, (http, grpc) in {
        # the client's request is wrong
        "INVALID_INPUT": (400, "INVALID_ARGUMENT"),
        "INVALID_DTYPE": (400, "INVALID_ARGUMENT"),
        "INVALID_CONFIG": (400, "INVALID_ARGUMENT"),
        "UNSUPPORTED_HEAD": (400, "INVALID_ARGUMENT"),  # a ConfigError: packing asks for --encoder-only
        "TYPE_MISMATCH": (400, "INVALID_ARGUMENT"),
        "STATE_TYPE_MISMATCH": (400, "INVALID_ARGUMENT"),
        "DEVICE_ERROR": (400, "INVALID_ARGUMENT"),
        "PAYLOAD_TOO_LARGE": (413, "RESOURCE_EXHAUSTED"),
        # who may call
        "UNAUTHORIZED": (401, "UNAUTHENTICATED"),
        "UNSAFE_PACKAGE": (403, "PERMISSION_DENIED"),
        "GATED_REPOSITORY": (403, "PERMISSION_DENIED"),
        # what is not there
        "MODEL_NOT_FOUND": (404, "NOT_FOUND"),
        "PACKAGE_NOT_FOUND": (404, "NOT_FOUND"),
        "ARCHITECTURE_NOT_FOUND": (404, "NOT_FOUND"),
        "REPOSITORY_NOT_FOUND": (404, "NOT_FOUND"),
        "REVISION_NOT_FOUND": (404, "NOT_FOUND"),
        "NOT_FOUND": (404, "NOT_FOUND"),
        "METHOD_NOT_ALLOWED": (405, "UNIMPLEMENTED"),
        "SESSION_EXPIRED": (410, "NOT_FOUND"),
        # the package is not servable
        "PACKAGE_ERROR": (422, "FAILED_PRECONDITION"),
        "PACKAGE_FORMAT_ERROR": (422, "FAILED_PRECONDITION"),
        "WEIGHT_SHAPE_MISMATCH": (422, "FAILED_PRECONDITION"),
        "PACKAGE_VERSION_UNSUPPORTED": (422, "FAILED_PRECONDITION"),
        "INTEGRITY_ERROR": (422, "FAILED_PRECONDITION"),
        # overload: retry later (retry_after_s says when)
        "QUEUE_FULL": (429, "RESOURCE_EXHAUSTED"),
        "TOO_MANY_CONNECTIONS": (503, "RESOURCE_EXHAUSTED"),
        "OUT_OF_MEMORY": (507, "RESOURCE_EXHAUSTED"),
        # time
        "REQUEST_TIMEOUT": (408, "DEADLINE_EXCEEDED"),
        "TIMEOUT": (504, "DEADLINE_EXCEEDED"),
        # the client left
        CLIENT_DISCONNECTED: (499, "CANCELLED"),
        # the server's side
        "BACKEND_ERROR": (500, "INTERNAL"),
        "NUMERIC_MISMATCH": (500, "INTERNAL"),  # a backend computing other numbers than the reference
        INTERNAL: (500, "INTERNAL"),
        "INFEROX_ERROR": (500, "INTERNAL"),
        "PLUGIN_ERROR": (500, "INTERNAL"),
        "PLUGIN_VERSION_MISMATCH": (500, "INTERNAL"),
        "IO_ERROR": (500, "INTERNAL"),
        "DOWNLOAD_ERROR": (502, "UNAVAILABLE"),
        "UNAVAILABLE": (503, "UNAVAILABLE"),
        "BACKEND_UNAVAILABLE": (503, "UNAVAILABLE"),
        "DEVICE_UNAVAILABLE": (503, "UNAVAILABLE"),
    }.items()
}

#: Codes a client should retry after a pause (the answer carries a retry hint).
RETRYABLE = frozenset({"QUEUE_FULL", "TOO_MANY_CONNECTIONS", "OUT_OF_MEMORY", "UNAVAILABLE"})


def error_status(exc: InferoxError | str) -> ErrorStatus:
    """How ``exc`` (an error, or its code) is answered: :data:`ERROR_STATUS`, else its class's
    ``http_status`` and the AIP-193 gRPC code for it."""
    code = exc if isinstance(exc, str) else exc.code
    found = ERROR_STATUS.get(code)
    if found is not None:
        return found
    http = 500 if isinstance(exc, str) else int(exc.http_status)
    return ErrorStatus(http, GRPC_STATUS_FOR_HTTP.get(http, "INVALID_ARGUMENT" if 400 <= http < 500 else "INTERNAL"))


def retry_after_s(exc: InferoxError) -> int | None:
    """Whole seconds (at least 1) a client should wait before retrying, for overload errors; else ``None``."""
    if exc.code not in RETRYABLE:
        return None
    seconds = getattr(exc, "retry_after", None)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        seconds = 1.0
    return max(1, math.ceil(seconds))


def error_headers(exc: InferoxError, ctx: Any = None) -> dict[str, str]:
    """The headers of an HTTP error answer: ``Retry-After`` on overload, the request's ``X-Request-ID``."""
    headers: dict[str, str] = {}
    retry = retry_after_s(exc)
    if retry is not None:
        headers["retry-after"] = str(retry)
    if ctx is not None:
        headers["x-request-id"] = ctx.response_id
    return headers


def v2_error_body(exc: InferoxError) -> dict[str, Any]:
    """The V2 error body: ``{"error": message, "code": CODE}``."""
    return {"error": exc.message, "code": exc.code}
