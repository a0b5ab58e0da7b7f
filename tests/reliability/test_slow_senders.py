"""Slow and stalled senders against ``inferox serve`` (issue 14, item 4): partial request lines,
partial headers, half-sent bodies, a trickle of bytes, idle connections beyond the cap, and a
stalled upload during shutdown.

Raw sockets on loopback against the real server (uvicorn, the real MLP package on torch): a
request whose headers and body have not arrived within ``read_timeout_s`` is answered 408 and
closed, connections beyond ``max_connections`` get 503 at once, and a graceful stop never waits
for an upload. Well-behaved keep-alive clients idle between requests are unaffected.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

READ_TIMEOUT_S = 1.0
#: How long a test waits for the server's answer before calling it "never".
PATIENCE_S = 15.0
VALID = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}).encode()


def _server(package: Path, **config: object) -> ServerThread:
    return ServerThread(InferoxServer(packages={"mlp": package}, config=ServerConfig(**config)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def guarded(mlp_package: Path) -> Iterator[ServerThread]:
    with _server(mlp_package, read_timeout_s=READ_TIMEOUT_S, keep_alive_s=30) as st:
        yield st


def _connect(st: ServerThread) -> socket.socket:
    sock = socket.create_connection((st.host, st.port), timeout=PATIENCE_S)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or PATIENCE_S passes: then fail)."""
    data = b""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"the server kept the connection open for {PATIENCE_S} s (got {data[:200]!r})")


def _status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)


def _request_head(length: int) -> bytes:
    return (f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n").encode()


STALLS = {
    "nothing": b"",
    "half a request line": b"POST /v2/models/mlp/inf",
    "partial headers": b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: test\r\ncontent-len",
    "half a body": _request_head(len(VALID)) + VALID[: len(VALID) // 2],
    "headers, no body": _request_head(len(VALID)),
}


@pytest.mark.parametrize("stall", sorted(STALLS))
def test_a_stalled_request_gets_408_and_is_closed(guarded: ServerThread, stall: str) -> None:
    sock = _connect(guarded)
    started = time.monotonic()
    sock.sendall(STALLS[stall])
    raw = _read_all(sock)
    took = time.monotonic() - started
    sock.close()
    status, body = _status_and_body(raw)
    assert status == 408 and body["code"] == "REQUEST_TIMEOUT" and "1 s" in str(body["error"])
    assert took >= READ_TIMEOUT_S * 0.9, took


def test_a_trickle_does_not_reset_the_deadline(guarded: ServerThread) -> None:
    """A slowloris sending one byte at a time is cut at the deadline of its first byte."""
    sock = _connect(guarded)
    payload = _request_head(len(VALID)) + VALID
    started = time.monotonic()
    sent = 0
    closed = False
    while time.monotonic() - started < READ_TIMEOUT_S * 5 and sent < len(payload):
        try:
            sock.sendall(payload[sent : sent + 1])
        except OSError:
            closed = True
            break
        sent += 1
        time.sleep(0.05)
    if not closed:
        raw = _read_all(sock)
        assert raw == b"" or _status_and_body(raw)[0] == 408
    assert sent < len(payload)  # cut before the whole request trickled in
    sock.close()


def test_keep_alive_clients_idle_between_requests_are_unaffected(guarded: ServerThread) -> None:
    with httpx.Client(base_url=guarded.url, timeout=PATIENCE_S) as client:
        for _ in range(2):
            r = client.post("/v2/models/mlp/infer", content=VALID, headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
            time.sleep(READ_TIMEOUT_S * 1.5)  # idle longer than the read timeout, on the same connection
        r = client.post("/v2/models/mlp/infer", content=VALID, headers={"content-type": "application/json"})
        assert r.status_code == 200


def test_the_server_still_serves_after_the_stalls(guarded: ServerThread) -> None:
    r = httpx.post(guarded.url + "/v2/models/mlp/infer", content=VALID, headers={"content-type": "application/json"}, timeout=PATIENCE_S)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 3]


def test_connections_beyond_the_cap_get_503(mlp_package: Path) -> None:
    with _server(mlp_package, max_connections=4, read_timeout_s=60) as st:
        held = [_connect(st) for _ in range(4)]
        time.sleep(0.3)  # let the server accept them
        extra = _connect(st)
        status, body = _status_and_body(_read_all(extra))
        assert status == 503 and body["code"] == "TOO_MANY_CONNECTIONS" and "4" in str(body["error"])
        extra.close()
        held.pop().close()
        time.sleep(0.3)
        r = httpx.post(st.url + "/v2/models/mlp/infer", content=VALID, headers={"content-type": "application/json"}, timeout=PATIENCE_S)
        assert r.status_code == 200
        for s in held:
            s.close()


def test_shutdown_is_not_held_up_by_a_stalled_upload(mlp_package: Path) -> None:
    st = _server(mlp_package, read_timeout_s=120, graceful_timeout_s=60).start()
    sock = _connect(st)
    sock.sendall(_request_head(len(VALID)) + VALID[:10])  # the request started; its body never completes
    time.sleep(0.5)
    started = time.monotonic()
    st.stop(timeout=120)
    took = time.monotonic() - started
    sock.close()
    assert took < 15, f"stopping took {took:.1f} s behind a stalled upload (graceful timeout 60 s)"


@pytest.mark.parametrize(("flag", "field", "value"), [("--read-timeout-s", "read_timeout_s", "2.5"), ("--max-connections", "max_connections", "7")])
def test_the_limits_are_settings(flag: str, field: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferox.engine.server._settings import SERVER_ENV, resolve

    assert ServerConfig().read_timeout_s <= 60 and ServerConfig().max_connections >= 1
    monkeypatch.setenv(SERVER_ENV[field], value)
    assert getattr(resolve(file=None, flags={}).config, field) == type(getattr(ServerConfig(), field))(value)
    monkeypatch.setenv(SERVER_ENV[field], "0")
    from inferox.core.errors import ConfigError

    with pytest.raises(ConfigError) as ei:
        resolve(file=None, flags={})
    assert ei.value.field == f"server.{field}" or ei.value.field == SERVER_ENV[field]
    assert flag.lstrip("-").replace("-", "_") == field
