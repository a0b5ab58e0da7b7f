"""What the data plane records about each request: its context, the access log, metrics, the span.

A transport describes a request with a :class:`RequestContext` (the protocol, the endpoint, the
client's request id, bearer token and ``traceparent``, how to learn that the client went away);
the data plane opens a :class:`Call` for it, and when the call ends — answered, refused, failed or
abandoned — writes **one** access-log line and updates the metrics and the span. Every transport
gets the same line::

    {"time": "2025-01-01T12:00:00.123+00:00", "ts": 1735732800.123, "level": "info",
     "logger": "inferox.server.access", "request_id": "…", "trace_id": "…", "protocol": "rest",
     "endpoint": "POST /v2/models/minilm/infer", "model": "minilm", "version": "1", "status": 200,
     "rows": 2, "tokens": 17, "queue_ms": 0.4, "compute_ms": 3.1, "duration_ms": 4.2, "client": "…"}

``status`` is the HTTP status of the outcome (:data:`~._errors.ERROR_STATUS`); gRPC lines add
``grpc_status``; failed calls add ``code``. Under uvicorn the REST transport hands the record to
its ASGI wrapper (``log_slot``), which logs it once the response's last byte is written, with that
end-to-end ``duration_ms`` (``handler_ms``: the data plane's own time).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from inferox.core.errors import InferoxError
from inferox.engine.server._errors import CLIENT_DISCONNECTED, ClientDisconnectedError, InternalServerError, error_status

if TYPE_CHECKING:
    from inferox.engine.server._dataplane import DataPlane

__all__ = ["ACCESS_LOGGER", "Call", "RequestContext", "access_line", "header_safe_id", "iso_time"]

ACCESS_LOGGER = "inferox.server.access"
access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("inferox.server")

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the [serve] extra brings it
    _orjson = None  # type: ignore[assignment]

#: Longest request id copied into a response header / the access log as given.
MAX_REQUEST_ID = 128


def header_safe_id(value: str | None) -> str:
    """The request id to answer with: the client's when it is short printable ASCII, else a
    generated one — raw input never becomes a header (a CR/LF would inject headers, non-Latin-1
    text cannot be encoded, a huge id makes clients refuse the response)."""
    if value and len(value) <= MAX_REQUEST_ID and all(" " < c <= "~" for c in value):
        return value
    return uuid.uuid4().hex


def iso_time(ts: float) -> str:
    """ISO-8601 UTC with milliseconds."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="milliseconds")


def access_line(record: dict[str, Any]) -> str:
    """One JSON line."""
    if _orjson is not None:
        return _orjson.dumps(record).decode()
    import json

    return json.dumps(record, separators=(",", ":"))


@dataclass(slots=True)
class RequestContext:
    """One request as a transport received it (everything the data plane needs besides the payload).

    ``protocol``: ``rest``, ``grpc``, ``openai``, ``ray``, ``tei`` … (a metrics label: keep it to
    a fixed set); ``endpoint``: what the access log shows (``"POST /v2/models/m/infer"``,
    ``"ModelInfer"``); ``request_id``: the client's (``X-Request-ID``; a V2 body's ``id`` wins);
    ``authorization``: the ``Authorization`` value (HTTP header, gRPC metadata); ``traceparent`` /
    ``tracestate``: W3C trace context; ``client``: ``host:port``; ``disconnected``: a coroutine
    function that returns once the client has gone (the REST disconnect watch; gRPC cancels the
    handler itself); ``log_slot``: where the record goes instead of the log (the REST timing
    wrapper logs it after the last byte).
    """

    protocol: str
    endpoint: str = ""
    request_id: str | None = None
    authorization: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    client: str | None = None
    started: float = field(default_factory=time.perf_counter)
    disconnected: Callable[[], Awaitable[None]] | None = None
    log_slot: list[dict[str, Any]] | None = None
    _response_id: str | None = None
    #: The call open for this request (a transport that parses its payload inside the record opens
    #: it; the data plane's methods then join it instead of opening another).
    open_call: Call | None = None

    @property
    def response_id(self) -> str:
        """The id the answer carries (a header, the access log): the client's when header-safe,
        else a generated one — the same every time it is asked for."""
        if self._response_id is None:
            self._response_id = header_safe_id(self.request_id)
        return self._response_id


class Call:
    """One request inside the data plane, from admission to the access-log line (a context manager).

    Code inside fills in ``model``, ``version``, ``rows``, ``tokens``, ``queue_s``, ``compute_s``;
    on exit the outcome is classified (an :class:`~inferox.core.errors.InferoxError` by its code, a
    cancelled call as ``CLIENT_DISCONNECTED`` / 499, anything else as ``INTERNAL`` — re-raised as
    :class:`~._errors.InternalServerError`, so transports only ever see typed errors) and recorded.
    """

    __slots__ = ("admitted", "batch_size", "compute_s", "ctx", "depth", "dp", "inference", "model", "op", "queue_s", "rows", "span", "tokens", "version", "wall")

    def __init__(self, dp: DataPlane, ctx: RequestContext, op: str, *, model: str | None, version: str | None, inference: bool) -> None:
        self.dp = dp
        self.ctx = ctx
        self.op = op
        self.model = model
        self.version = version
        self.inference = inference
        self.rows: int | None = None
        self.tokens: int | None = None
        self.queue_s: float | None = None
        self.compute_s: float | None = None
        self.batch_size: int | None = None
        #: The served version the request was admitted to (set by the data plane).
        self.admitted: Any = None
        self.wall = time.time()
        self.span: Any = None
        self.depth = 0

    def join(self, op: str, *, model: str | None, version: str | None, inference: bool) -> Call:
        """This open call, for a data-plane method called inside it (the transport opened it to
        parse its payload inside the record): it names the model, the version and the operation."""
        if model is not None and self.model is None:
            self.model = model
        if version is not None and self.version is None:
            self.version = version
        if inference and not self.inference:
            self.inference = True
            self.dp._request_started()
        if self.op == "request":
            self.op = op
        return self

    def __enter__(self) -> Call:
        self.depth += 1
        if self.depth > 1:
            return self
        self.ctx.open_call = self
        tracing = self.dp.tracing
        if tracing is not None:
            ctx = self.ctx
            attrs: dict[str, Any] = {"inferox.protocol": ctx.protocol, "inferox.operation": self.op}
            if self.model is not None:
                attrs["inferox.model"] = self.model
            self.span = tracing.start_request(ctx.endpoint or self.op, traceparent=ctx.traceparent, tracestate=ctx.tracestate, attributes=attrs)
        if self.inference:
            self.dp._request_started()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        self.ctx.open_call = None
        error: InferoxError | None = None
        internal: BaseException | None = None
        if exc is None:
            pass
        elif isinstance(exc, InferoxError):
            error = exc
        elif isinstance(exc, asyncio.CancelledError):
            error = ClientDisconnectedError()
        elif isinstance(exc, Exception):
            internal = exc
            log.error("internal error in %s (%s)", self.op, self.model or "-", exc_info=(exc_type, exc, tb) if exc_type is not None else None)
            error = InternalServerError(f"internal server error ({type(exc).__name__})")
        try:
            self.dp._finish(self, error)
        finally:
            if self.inference:
                self.dp._request_finished()
        if internal is not None:
            assert error is not None
            raise error from internal

    def stage(self, name: str, *, start_ns: int | None = None, **attributes: Any) -> Any:
        """A child span of this request (``None`` when tracing is off); the caller ends it."""
        if self.span is None:
            return None
        return self.dp.tracing.child(self.span, name, start_ns=start_ns, attributes=attributes)  # type: ignore[union-attr]

    @contextlib.contextmanager
    def traced(self, name: str, **attributes: Any) -> Iterator[None]:
        """A child span around a block (nothing when tracing is off): ``with call.traced("encode"): …``."""
        span = self.stage(name, **attributes) if self.span is not None else None
        try:
            yield
        finally:
            if span is not None:
                span.end()

    def record(self, error: InferoxError | None) -> dict[str, Any]:
        """The access-log record of this call ending with ``error`` (``None``: answered)."""
        ctx = self.ctx
        now = time.perf_counter()
        status = 200 if error is None else error_status(error).http
        rec: dict[str, Any] = {
            "time": iso_time(self.wall),
            "ts": self.wall,
            "level": "info" if status < 500 or (error is not None and error.code == CLIENT_DISCONNECTED) else "error",
            "logger": ACCESS_LOGGER,
            "request_id": ctx.response_id,
            "trace_id": None,
            "protocol": ctx.protocol,
            "endpoint": ctx.endpoint or self.op,
            "model": self.model[:MAX_REQUEST_ID] if self.model is not None else None,
            "version": self.version[:MAX_REQUEST_ID] if self.version is not None else None,
            "status": status,
        }
        if ctx.protocol == "grpc":
            rec["grpc_status"] = "OK" if error is None else error_status(error).grpc
        if error is not None:
            rec["code"] = error.code
        if self.rows is not None:
            rec["rows"] = self.rows
        if self.tokens is not None:
            rec["tokens"] = self.tokens
        if self.queue_s is not None:
            rec["queue_ms"] = round(self.queue_s * 1000, 3)
        if self.compute_s is not None:
            rec["compute_ms"] = round(self.compute_s * 1000, 3)
        rec["duration_ms"] = round((now - ctx.started) * 1000, 3)
        if ctx.client is not None:
            rec["client"] = ctx.client
        return rec
