"""One request lifecycle on every transport (issue 22): attacks and faults found against the real
server, each answered as a trusted server would — the same way over V2 REST, V2 gRPC and the
OpenAI API.

The real server (REST and gRPC from one composition root) on loopback, serving the real
all-MiniLM-L6-v2 and MLP packages on torch, driven by the real clients (tritonclient.grpc, httpx,
raw sockets and raw gRPC calls where a client would refuse to send the fault).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

grpc = pytest.importorskip("grpc")
tc_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "lifecycle-token"
ROW_LIMIT = getattr(ServerConfig, "max_request_rows", 2048)  # the default: the tests run against the defaults


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path, minilm_package: Path) -> Iterator[ServerThread]:
    repo = tmp_path_factory.mktemp("lifecycle") / "models"
    shutil.copytree(mlp_package, repo / "mlp")
    shutil.copytree(minilm_package, repo / "minilm")
    (repo / "minilm" / "serving.toml").write_text('backends = ["torch"]\n')
    (repo / "mlp" / "serving.toml").write_text('backends = ["torch"]\n')
    server = InferoxServer(repository=repo, config=ServerConfig(token=TOKEN, grpc_port=0, request_timeout_s=60.0))
    with ServerThread(server) as st:
        yield st


@pytest.fixture()
def client(served: ServerThread) -> Iterator[Any]:
    c = tc_grpc.InferenceServerClient(url=served.grpc_address)
    yield c
    c.close()


def _texts(n: int, word: str = "word") -> Any:
    inp = tc_grpc.InferInput("text", [n], "BYTES")
    inp.set_data_from_numpy(np.array([word.encode()] * n, dtype=object))
    return inp


def _trailing(exc: InferenceServerException) -> dict[str, str]:
    err = exc.__cause__ or exc.__context__
    return dict(err.trailing_metadata() or ()) if err is not None and hasattr(err, "trailing_metadata") else {}


def _grpc_status(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


def _metric(served: ServerThread, prefix: str) -> int:
    page = httpx.get(f"{served.url}/metrics").text
    return sum(int(float(ln.rsplit(" ", 1)[1])) for ln in page.splitlines() if ln.startswith(prefix))


# ------------------------------------------------------------------------------- one product, one answer
def test_grpc_answers_with_the_packages_default_outputs(client: Any, served: ServerThread) -> None:
    """gRPC returned all three outputs (last_hidden_state included) where REST returned one."""
    result = client.infer("minilm", [_texts(2, "A man is eating food.")])
    assert [o.name for o in result.get_response().outputs] == ["sentence_embedding"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["A man is eating food."] * 2}]}
    rest = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body).json()
    assert [o["name"] for o in rest["outputs"]] == ["sentence_embedding"]
    np.testing.assert_allclose(result.as_numpy("sentence_embedding"), np.asarray(rest["outputs"][0]["data"], np.float32).reshape(2, -1), atol=1e-6)


# --------------------------------------------------------------------------------------- bounded work
def test_too_many_rows_are_refused_on_every_protocol_naming_the_limit(client: Any, served: ServerThread) -> None:
    """A 2,100-row request (a few KB of one-word texts) used to run as one forward pass."""
    n = ROW_LIMIT + 52
    with pytest.raises(InferenceServerException) as ei:
        client.infer("minilm", [_texts(n)])
    assert _grpc_status(ei.value) == "RESOURCE_EXHAUSTED" and "server.max_request_rows" in ei.value.message()
    assert _trailing(ei.value).get("inferox-error-code") == "PAYLOAD_TOO_LARGE"
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [n], "data": ["word"] * n}]}
    r = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body)
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE" and "server.max_request_rows" in r.json()["error"]


def test_an_output_listed_thousands_of_times_is_refused(client: Any, served: ServerThread) -> None:
    """Listing one output 3,000 times returned 3,000 copies of it."""
    outs = [tc_grpc.InferRequestedOutput("sentence_embedding")] * 3000
    with pytest.raises(InferenceServerException) as ei:
        client.infer("minilm", [_texts(1)], outputs=outs)
    assert _grpc_status(ei.value) == "INVALID_ARGUMENT" and "more than once" in ei.value.message()
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["w"]}], "outputs": [{"name": "sentence_embedding"}] * 3000}
    r = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_INPUT" and "more than once" in r.json()["error"]


def test_a_huge_text_never_holds_up_a_short_request(served: ServerThread) -> None:
    """A 30 MB text held a 300-byte request for 70 s (one tokeniser thread, no byte limit)."""
    huge = {"model": "minilm", "input": ["word " * (6 * 2**20)]}  # 30 MB
    short = {"model": "minilm", "input": ["A man is eating food. " * 13]}  # ~300 bytes
    answers: dict[str, httpx.Response] = {}

    def send(key: str, body: dict[str, Any], timeout: float) -> None:
        answers[key] = httpx.post(f"{served.url}/v1/embeddings", json=body, timeout=timeout)

    big = threading.Thread(target=send, args=("huge", huge, 120))
    big.start()
    time.sleep(0.2)
    send("short", short, 30)
    big.join(120)
    assert answers["short"].status_code == 200
    r = answers["huge"]
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE" and "server.max_request_text_bytes" in r.json()["error"]["message"]


# -------------------------------------------------------------------------------------- client faults
def test_a_lone_surrogate_on_embeddings_is_400(served: ServerThread) -> None:
    body = b'{"model": "minilm", "input": ["fine", "bad \\ud800 text"]}'
    r = httpx.post(f"{served.url}/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"], err["type"]) == ("INVALID_INPUT", "input", "invalid_request_error")


def test_a_client_leaving_mid_body_is_not_an_internal_error(served: ServerThread) -> None:
    internal = _metric(served, 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="INTERNAL"}')
    gone = _metric(served, 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="CLIENT_DISCONNECTED"}')
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": [")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _metric(served, 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="CLIENT_DISCONNECTED"}') == gone:
        time.sleep(0.05)
    assert _metric(served, 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="CLIENT_DISCONNECTED"}') == gone + 1
    assert _metric(served, 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="INTERNAL"}') == internal


def test_content_length_with_transfer_encoding_is_400_and_closed(served: ServerThread) -> None:
    """RFC 9112 section 6.1: such a request was parsed and the connection kept open."""
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
    chunked = hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    head = f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(head.encode() + chunked)
        data = b""
        while chunk := s.recv(65536):  # the server closes the connection: recv returns b""
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(payload)["code"] == "INVALID_INPUT" and "Transfer-Encoding" in json.loads(payload)["error"]


def test_malformed_protobuf_is_invalid_argument(served: ServerThread) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as ei:
            call(b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(ei.value.trailing_metadata() or ())["inferox-error-code"] == "INVALID_INPUT"


def test_names_from_the_wire_are_echoed_bounded(client: Any, served: ServerThread) -> None:
    name = "m" * 100_000
    x = tc_grpc.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer(name, [x])
    assert _grpc_status(ei.value) == "NOT_FOUND" and len(ei.value.message()) < 1000
    r = httpx.post(f"{served.url}/v2/models/mlp/infer", json={"inputs": [{"name": "i" * 100_000, "datatype": "BYTES", "shape": [1], "data": ["a"]}]})
    assert r.status_code == 400 and len(r.text) < 2000
    for body, status in (({"model": "m" * 100_000, "input": ["a"]}, 404), ({"model": "minilm", "input": ["a"], "k" * 100_000: 1}, 400)):
        r = httpx.post(f"{served.url}/v1/embeddings", json=body)
        assert r.status_code == status and len(r.text) < 2000


# ------------------------------------------------------------------------------------- observability
def test_every_protocol_logs_the_same_line_and_labels_its_metrics(served: ServerThread, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    x = tc_grpc.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        client.infer("mlp", [x], headers={"x-request-id": "grpc-1"})
        r = httpx.post(f"{served.url}/v1/embeddings", json={"model": "minilm", "input": ["hi there"]}, headers={"x-request-id": "openai-1"})
        assert r.headers["x-request-id"] == "openai-1"  # /v1/embeddings had no request id
        client.get_model_repository_index(headers={"authorization": f"Bearer {TOKEN}"})
        assert httpx.post(f"{served.url}/v2/repository/index").status_code == 401

        def lines() -> list[dict[str, Any]]:
            return [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "inferox.server.access"]

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(lines()) < 4:
            time.sleep(0.02)
    by_id = {ln["request_id"]: ln for ln in lines()}
    g, o = by_id["grpc-1"], by_id["openai-1"]
    assert (g["protocol"], g["endpoint"], g["model"], g["status"], g["grpc_status"], g["rows"]) == ("grpc", "ModelInfer", "mlp", 200, "OK", 1)
    assert (o["protocol"], o["endpoint"], o["model"], o["status"], o["rows"]) == ("openai", "POST /v1/embeddings", "minilm", 200, 1) and o["tokens"] == 4
    assert all({"time", "level", "logger", "trace_id", "version", "duration_ms"} <= set(ln) for ln in lines())
    assert any(ln["endpoint"] == "RepositoryIndex" and ln["status"] == 200 for ln in lines())
    assert any(ln["endpoint"] == "POST /v2/repository/index" and ln["status"] == 401 for ln in lines())
    page = httpx.get(f"{served.url}/metrics").text
    assert 'inferox_requests_total{model="mlp",version="1",protocol="grpc",outcome="success"}' in page
    assert 'inferox_requests_total{model="minilm",version="1",protocol="openai",outcome="success"}' in page
