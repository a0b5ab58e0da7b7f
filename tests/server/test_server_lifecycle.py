"""Readiness after warm-up, graceful shutdown with requests in flight, token protection of every
endpoint, and the structured log format."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Any

import httpx
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread, ServingSettings, configure_logging, create_app
from inferox.engine.server._metrics import Metrics
from inferox.engine.server._run import JsonLogFormatter

from .conftest import AffineModel, wait_until

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


class SlowWarmup(AffineModel):
    """Warm-up takes a while (as a JIT compile would): the server must not report ready before it ends."""

    def __init__(self) -> None:
        super().__init__("warm")
        self.warmed = threading.Event()

    def warmup(self) -> None:
        time.sleep(1.0)
        self.warmed.set()


def test_ready_only_after_every_model_warmed_up() -> None:
    model = SlowWarmup()
    server = InferoxServer()
    server.add_model("warm", model)
    st = ServerThread(server).start(wait_ready=False)
    try:
        seen: list[tuple[bool, int]] = []
        while True:
            r = httpx.get(f"{st.url}/v2/health/ready")
            seen.append((model.warmed.is_set(), r.status_code))
            if r.status_code == 200:
                break
            assert r.json() == {"ready": False}
            assert httpx.get(f"{st.url}/v2/health/live").json() == {"live": True}
            if not model.warmed.is_set() and "warm" in server.models:
                meta = httpx.get(f"{st.url}/v2/models/warm")
                infer = httpx.post(f"{st.url}/v2/models/warm/infer", json=BODY)
                model_ready = httpx.get(f"{st.url}/v2/models/warm/ready")
                # Checked after all three answered: warm-up may end between any two of them.
                if not model.warmed.is_set():
                    assert (meta.status_code, meta.json()["code"]) == (503, "UNAVAILABLE")
                    assert (infer.status_code, infer.json()["code"]) == (503, "UNAVAILABLE")
                    assert model_ready.status_code == 503
            time.sleep(0.05)
        assert seen[0] == (False, 503)
        # Every 200 came after the warm-up had finished.
        assert all(warmed for warmed, status in seen if status == 200)
        assert httpx.post(f"{st.url}/v2/models/warm/infer", json=BODY).status_code == 200
    finally:
        st.stop()


def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    server = InferoxServer()
    server.add_model("slow", AffineModel("slow", delay=0.5), settings=ServingSettings(max_batch_size=1, batch_delay_ms=0.0))
    st = ServerThread(server).start()
    results: list[int] = []

    def call() -> None:
        results.append(httpx.post(f"{st.url}/v2/models/slow/infer", json=BODY, timeout=60).status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    # All three accepted (a request not yet connected when the listener closes is refused, rightly).
    assert wait_until(lambda: server.models["slow"].in_flight == 3)
    st.stop()
    for t in threads:
        t.join(60)
    assert results == [200, 200, 200]
    assert server._shutting_down and not server.is_ready()
    assert server.models["slow"].engine.closed
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{st.url}/v2/health/live", timeout=2)


def test_protect_all_requires_the_token_everywhere() -> None:
    app = create_app(models={"affine": AffineModel()}, config=ServerConfig(token="t0k", protect_all=True))
    with ServerThread(app.state.server) as st:
        auth = {"authorization": "Bearer t0k"}
        for method, path in [
            ("GET", "/v2/health/live"),
            ("GET", "/v2/health/ready"),
            ("GET", "/v2"),
            ("GET", "/v2/models/stats"),
            ("GET", "/v2/models/affine"),
            ("GET", "/v2/models/affine/ready"),
            ("GET", "/metrics"),
            ("POST", "/v2/repository/index"),
        ]:
            r = httpx.request(method, st.url + path)
            assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), path
            assert httpx.request(method, st.url + path, headers=auth).status_code == 200, path
        r = httpx.post(f"{st.url}/v2/models/affine/infer", json=BODY)
        assert r.status_code == 401
        r = httpx.post(f"{st.url}/v2/models/affine/infer", json=BODY, headers=auth)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
        # Without a repository there is nothing to load.
        r = httpx.post(f"{st.url}/v2/repository/models/affine/load", headers=auth)
        assert (r.status_code, r.json()["code"]) == (404, "MODEL_NOT_FOUND")
        r = httpx.post(f"{st.url}/v2/repository/index", headers=auth, content=b"[1]")
        assert r.status_code == 400


def test_a_model_that_fails_to_load_leaves_the_server_not_ready(tmp_path: Any) -> None:
    (tmp_path / "metadata.json").write_text("{}")
    server = InferoxServer(packages={"bad": tmp_path}, config=ServerConfig(exit_on_error=False))
    server.add_model("good", AffineModel())
    with ServerThread(server) as st:
        assert httpx.get(f"{st.url}/v2/health/ready").status_code == 503
        assert "bad" in server.failed and "bad" not in server.models
        assert httpx.post(f"{st.url}/v2/models/good/infer", json=BODY).status_code == 200


def test_json_log_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logger = logging.getLogger("inferox.server")
    try:
        logger.info("hello %s", "there")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        logging.getLogger("inferox.server.access").info(json.dumps({"request_id": "r"}))
    finally:
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "hello there" and lines[0]["level"] == "info" and lines[0]["logger"] == "inferox.server"
    assert "ValueError: boom" in lines[1]["exc"]
    assert lines[2] == {"request_id": "r"}
    assert isinstance(JsonLogFormatter().format(logging.LogRecord("x", 20, "", 0, "m", None, None)), str)


def test_metrics_escape_labels() -> None:
    metrics = Metrics()
    metrics.record_failure('we"ird\\name\n', "CODE", duration=0.01)
    text = metrics.render()
    assert 'model="we\\"ird\\\\name\\n"' in text and "inferox_models_loaded 0" in text


def test_fixing_a_failed_model_makes_the_server_ready(tmp_path: Any, mlp_package: Any) -> None:
    import shutil

    repo = tmp_path / "repo"
    (repo / "late").mkdir(parents=True)
    (repo / "late" / "metadata.json").write_text("{broken")
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig(exit_on_error=False))) as st:
        assert httpx.get(f"{st.url}/v2/health/ready").status_code == 503
        r = httpx.post(f"{st.url}/v2/repository/models/late/load")
        assert (r.status_code, r.json()["code"]) == (422, "PACKAGE_FORMAT_ERROR")
        shutil.rmtree(repo / "late")
        shutil.copytree(mlp_package, repo / "late")
        r = httpx.post(f"{st.url}/v2/repository/models/late/load")
        assert r.status_code == 200 and r.json()["state"] == "READY"
        assert httpx.get(f"{st.url}/v2/health/ready").status_code == 200


def _get_live(sock: Any) -> bytes:
    """Send one request and read exactly one whole response (b"" when the server has closed).

    The server may write the head and the body separately; reading one ``recv`` would leave the
    body in the socket, where the next request's read would find it instead of a status line."""
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(("keep_alive_s", "idle_s", "still_open"), [(1, 2.5, False), (75, 6.0, True)])
def test_idle_keep_alive_connections_outlive_client_expiry(keep_alive_s: int, idle_s: float, still_open: bool) -> None:
    """A connection idle for 6 s (beyond httpx's 5 s expiry and uvicorn's own 5 s default) is
    still open by default, so clients close idle connections first, never the server under a
    request in flight; ``keep_alive_s`` sets it (here 1 s: closed by the server)."""
    import socket

    server = InferoxServer(config=ServerConfig(keep_alive_s=keep_alive_s))
    server.add_model("affine", AffineModel())
    with ServerThread(server) as st, socket.create_connection((st.host, st.port), timeout=10) as sock:
        assert _get_live(sock).startswith(b"HTTP/1.1 200")
        time.sleep(idle_s)
        try:
            answer = _get_live(sock)
        except ConnectionError:
            answer = b""
        assert answer.startswith(b"HTTP/1.1 200") is still_open, answer
