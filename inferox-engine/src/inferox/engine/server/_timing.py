"""End-to-end request timing for the access log, as an ASGI wrapper around the server's app.

An endpoint's own clock stops before its response is sent, so a stall on the way out (a slow
write, Nagle waiting for an ACK) never shows in it. Under uvicorn the app is wrapped: the clock
starts when uvicorn hands over the parsed request (its first bytes have been read) and stops once
the last response body chunk has been handed to the transport, which writes to the socket at once
when it can. Endpoints that write an access-log record put it in the request's scope under
:data:`ACCESS_RECORD` instead of logging it; the wrapper logs it with that end-to-end
``duration_ms`` (the endpoint's own time stays as ``handler_ms``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ACCESS_RECORD", "timed_access_log"]

#: Scope key of the slot (a one-element list) where an endpoint leaves its access-log record.
ACCESS_RECORD = "inferox.access_record"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("inferox.server.access")


def access_line(record: dict[str, Any]) -> str:
    from inferox.engine.server._observe import access_line as line

    return line(record)


def timed_access_log(app: ASGIApp) -> ASGIApp:
    """``app`` with its access-log records timed from request to last response byte."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        slot: list[dict[str, Any]] = []
        scope[ACCESS_RECORD] = slot
        finished: list[float] = []
        status: list[int] = []

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished.append(time.perf_counter())

        try:
            await app(scope, receive, timed_send)
        finally:
            if slot:
                record = slot[0]
                record["handler_ms"] = record.get("duration_ms")
                record["duration_ms"] = round(((finished[0] if finished else time.perf_counter()) - started) * 1000, 3)
                if status and status[0] != record.get("status"):
                    record["status"] = status[0]  # what was sent wins (a response that failed to encode)
                access_log.info(access_line(record))

    return wrapped
