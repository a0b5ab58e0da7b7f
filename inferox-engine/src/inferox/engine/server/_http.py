"""uvicorn's HTTP/1.1 protocol (h11) with the limits a public server needs against slow senders.

uvicorn bounds only idle keep-alive connections: a client that sends half a request line, some
headers, or part of a body — and then nothing — holds its connection (and, for a body, a running
request) for ever, and a graceful shutdown waits for it. :func:`guarded_protocol` adds:

* **a read timeout**: every request's headers *and* body must arrive within ``read_timeout_s`` of
  its first byte (of the connection, for the first request). Otherwise the server answers
  ``408 Request Timeout`` (``{"error", "code": "REQUEST_TIMEOUT"}``, ``Connection: close``) and
  closes; a request already answered is just closed;
* **a connection cap**: beyond ``max_connections`` open connections a new one is answered
  ``503`` (``code: "TOO_MANY_CONNECTIONS"``) and closed at once, before it can send anything;
* **shutdown that never waits for an upload**: on shutdown a connection still receiving a
  request (headers or body) is closed at once; requests fully received finish as usual;
* **no request smuggling**: a request with both ``Content-Length`` and ``Transfer-Encoding`` (RFC
  9112 §6.1: the server must close the connection after answering it) — or that h11 finds
  malformed — is answered ``400`` (``{"error", "code": "INVALID_INPUT"}``, ``Connection: close``)
  and the connection is closed, as nginx does.

Each such answer gets an access-log line of the data plane's shape (``protocol: "rest"``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["guarded_protocol"]

access_log = logging.getLogger("inferox.server.access")


def _log_refusal(status: int, code: str, client: Any) -> None:
    """The access-log line of a request refused before it reached the app."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    from inferox.engine.server._observe import access_line, header_safe_id, iso_time

    now = time.time()
    record = {
        "time": iso_time(now), "ts": now, "level": "info", "logger": "inferox.server.access", "request_id": header_safe_id(None), "trace_id": None,
        "protocol": "rest", "endpoint": "HTTP", "model": None, "version": None, "status": status, "code": code,
        "client": f"{client[0]}:{client[1]}" if isinstance(client, tuple) and len(client) >= 2 else None,
    }
    access_log.info(access_line(record))


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": message, "code": code}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii")
    return head + body


def guarded_protocol(*, read_timeout_s: float, max_connections: int) -> type[Any]:
    """An ``H11Protocol`` subclass with the read timeout and connection cap (for ``uvicorn.Config(http=...)``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    too_many = _raw_response(503, "Service Unavailable", "TOO_MANY_CONNECTIONS", f"the server holds its limit of {max_connections} open connections; retry later")
    smuggled = "a request must not carry both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)"
    too_slow = _raw_response(408, "Request Timeout", "REQUEST_TIMEOUT", f"the request's headers and body did not arrive within {read_timeout_s:g} s")

    class GuardedH11Protocol(H11Protocol):  # type: ignore[misc]
        _read_timer: Any = None
        _refusal: str | None = None

        def connection_made(self, transport: Any) -> None:
            # Count before joining: the cap is on connections already open.
            if len(self.server_state.connections) >= max_connections:
                self.transport = transport
                transport.write(too_many)
                transport.close()
                _log_refusal(503, "TOO_MANY_CONNECTIONS", transport.get_extra_info("peername"))
                return
            super().connection_made(transport)
            next_event = self.conn.next_event

            def checked_next_event() -> Any:
                # Framing with both headers is ambiguous (a smuggling vector): refuse, never guess.
                event = next_event()
                if isinstance(event, h11.Request):
                    names = {k for k, _ in event.headers}
                    if b"content-length" in names and b"transfer-encoding" in names:
                        self._refusal = smuggled
                        raise h11.RemoteProtocolError(smuggled)
                return event

            self.conn.next_event = checked_next_event  # type: ignore[method-assign]
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self.transport is not None and self not in self.server_state.connections and self.flow is None:
                return  # refused by the cap: never fully made
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._update()

        def send_400_response(self, msg: str) -> None:
            # uvicorn's own answer to a malformed request is plain text; ours is the server's shape.
            reason = self._refusal or "the request is not valid HTTP/1.1"
            self._disarm()
            self.transport.write(_raw_response(400, "Bad Request", "INVALID_INPUT", reason))
            self.transport.close()
            _log_refusal(400, "INVALID_INPUT", self.client)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._update()

        def shutdown(self) -> None:
            if self._receiving():
                # A stalled upload must not hold the shutdown for graceful_timeout_s.
                self._disarm()
                self.transport.close()
                return
            super().shutdown()

        # -- the read deadline ----------------------------------------------------------------
        def _receiving(self) -> bool:
            """Whether a request is partly received: bytes of its headers, or its body, pending."""
            if self.conn.their_state is h11.SEND_BODY:
                return True
            return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

        def _update(self) -> None:
            if self.transport is None or self.transport.is_closing():
                self._disarm()
            elif self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
                self._disarm()  # the whole request is in: the response is the app's business
            elif self._receiving():
                self._arm()  # armed once per request, from its first byte

        def _arm(self) -> None:
            if self._read_timer is None:
                self._read_timer = self.loop.call_later(read_timeout_s, self._read_timeout)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timeout(self) -> None:
            self._read_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(too_slow)
                _log_refusal(408, "REQUEST_TIMEOUT", self.client)
            self.logger.info("closing a connection whose request did not arrive within %s s", read_timeout_s)
            self.transport.close()

    return GuardedH11Protocol
