"""The real V2 server on loopback, driven by the real tritonclient.http (JSON and binary data) and,
for malformed requests, by plain HTTP (httpx)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inferox.core import DType
from inferox.engine.server import InferoxServer, ServerConfig, ServerThread, ServingSettings
from tests.support.net import wait_until

from .conftest import ECHO_DTYPES, AffineModel, EchoModel

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served() -> Iterator[ServerThread]:
    server = InferoxServer(config=ServerConfig(token=TOKEN, max_body_bytes=256 * 1024, request_timeout_s=30.0))
    server.add_model("echo", EchoModel())
    server.add_model("affine", AffineModel(), settings=ServingSettings(max_batch_size=16, batch_delay_ms=5.0))
    server.add_model("slow", AffineModel("slow", delay=0.4), settings=ServingSettings(max_batch_size=1, max_queue_size=1, batch_delay_ms=0.0))
    with ServerThread(server) as st:
        yield st


@pytest.fixture()
def client(served: ServerThread, triton: Any) -> Any:
    return triton(served.address)


def _infer_input(name: str, arr: np.ndarray, datatype: str, binary: bool) -> httpclient.InferInput:
    inp = httpclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


def _extremes(d: DType) -> np.ndarray:
    """Values at the edges of each dtype's range, so a narrowing or a byte-order slip shows."""
    if d.is_bool:
        vals: list[Any] = [True, False, True, True, False, False]
    elif d.is_int:
        info = np.iinfo(d.to_numpy())
        vals = [int(info.min), int(info.max), 0, 1, int(info.max) - 1, int(info.min) + 1]
    elif d is DType.F16:
        vals = [-65504.0, 65504.0, 0.5, -0.25, 1e-3, 3.140625]
    elif d is DType.BF16:
        vals = [-3.0e38, 3.0e38, 0.5, -0.25, 1.0, 3.140625]
    else:
        vals = [-1.5e30 if d is DType.F32 else -1.5e300, 1e-30, 0.1, -0.2, 123456.789, 3.14159265358979]
    return np.asarray(vals, dtype=object).astype(d.to_numpy()).reshape(2, 3)


# --------------------------------------------------------------------------------------------- health
def test_health_and_server_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "inferox"
    assert "binary_tensor_data" in meta["extensions"] and "model_repository" in meta["extensions"]
    assert client.is_model_ready("affine")
    assert client.is_model_ready("affine", model_version="1")
    assert not client.is_model_ready("affine", model_version="7")


def test_model_metadata_by_name_and_version(client: Any) -> None:
    meta = client.get_model_metadata("affine")
    assert meta["name"] == "affine" and meta["versions"] == ["1"] and meta["platform"] == "inferox_torch"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("affine", model_version="1") == meta
    echo = client.get_model_metadata("echo")
    assert {i["datatype"] for i in echo["inputs"]} == {d.v2_name for d in ECHO_DTYPES}
    with pytest.raises(InferenceServerException) as ei:
        client.get_model_metadata("affine", model_version="2")
    assert ei.value.status() == "404"
    assert "affine/versions/2" in ei.value.message()


# ------------------------------------------------------------------------------------------- datatypes
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(client: Any, binary: bool) -> None:
    arrays = {d: _extremes(d) for d in ECHO_DTYPES}
    # tritonclient (like Triton) refuses BF16 as JSON: it always travels binary.
    inputs = [_infer_input(f"IN_{d.v2_name}", a, d.v2_name, binary or d is DType.BF16) for d, a in arrays.items()]
    outputs = [httpclient.InferRequestedOutput(f"OUT_{d.v2_name}", binary_data=binary or d is DType.BF16) for d in ECHO_DTYPES]
    result = client.infer("echo", inputs, outputs=outputs, request_id=f"dtypes-{binary}")
    response = result.get_response()
    assert response["id"] == f"dtypes-{binary}"
    for d, a in arrays.items():
        out = result.as_numpy(f"OUT_{d.v2_name}")
        entry = next(o for o in response["outputs"] if o["name"] == f"OUT_{d.v2_name}")
        assert entry["datatype"] == d.v2_name
        assert ("binary_data_size" in entry.get("parameters", {})) == (binary or d is DType.BF16)
        assert out.shape == (2, 3)
        if d is DType.BF16:
            np.testing.assert_array_equal(out.view(np.uint16), a.view(np.uint16))
        else:
            np.testing.assert_array_equal(out, a)


def test_json_request_with_nested_data_and_request_id(served: ServerThread) -> None:
    body = {"id": "req-42", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [[0, 1, 2, 3], [4, 5, 6, 7.5]]}]}
    r = httpx.post(f"{served.url}/v2/models/affine/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-42" and out["model_name"] == "affine" and out["model_version"] == "1"
    assert r.headers["x-request-id"] == "req-42"
    assert out["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 4], "data": [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 16.0]}]
    r2 = httpx.post(f"{served.url}/v2/models/affine/versions/1/infer", json=body)
    assert r2.status_code == 200 and r2.json()["outputs"] == out["outputs"]


def test_binary_request_with_json_output(client: Any) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    result = client.infer("affine", [_infer_input("x", x, "FP32", True)], outputs=[httpclient.InferRequestedOutput("y", binary_data=False)])
    assert "data" in result.get_response()["outputs"][0]
    np.testing.assert_allclose(result.as_numpy("y"), 2 * x + 1, rtol=1e-6)


def test_concurrent_requests_are_batched_correctly(served: ServerThread) -> None:
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(16)]
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        c = httpclient.InferenceServerClient(served.address)
        try:
            r = c.infer("affine", [_infer_input("x", xs[i], "FP32", True)])
            results[i] = r.as_numpy("y")
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(16))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], 2 * x + 1, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ errors
def _error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    assert set(body) == {"error", "code"}, body
    return r.status_code, body["code"], body["error"]


def test_malformed_json_is_400(served: ServerThread) -> None:
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", content=b'{"inputs": [', headers={"content-type": "application/json"}))
    assert (status, code) == (400, "INVALID_INPUT")
    assert "not valid JSON" in msg
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=[1, 2]))
    assert (status, code) == (400, "INVALID_INPUT") and "JSON object" in msg
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json={"inputs": []}))
    assert (status, code) == (400, "INVALID_INPUT") and "inputs" in msg


def test_bad_binary_header_length_is_400(served: ServerThread) -> None:
    r = httpx.post(f"{served.url}/v2/models/affine/infer", content=b"{}", headers={"Inference-Header-Content-Length": "999"})
    status, code, msg = _error(r)
    assert (status, code) == (400, "INVALID_INPUT") and "Inference-Header-Content-Length" in msg


def test_wrong_shape_is_400_naming_the_input(served: ServerThread, client: Any) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_INPUT") and "'x'" in msg and "8 elements" in msg
    with pytest.raises(InferenceServerException) as ei:
        client.infer("affine", [_infer_input("x", np.zeros((2, 5), np.float32), "FP32", True)])
    assert ei.value.status() == "400"
    assert "'x'" in ei.value.message() and "shape mismatch" in ei.value.message()


def test_wrong_datatype_is_400(served: ServerThread, client: Any) -> None:
    with pytest.raises(InferenceServerException) as ei:
        client.infer("affine", [_infer_input("x", np.zeros((1, 4), np.float64), "FP64", True)])
    assert ei.value.status() == "400" and "f64" in ei.value.message()
    body = {"inputs": [{"name": "x", "datatype": "FP8", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_DTYPE") and "FP8" in msg
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, "a", 3, 4]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_DTYPE")
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_INPUT") and "BYTES" in msg


def test_unknown_input_and_output(served: ServerThread) -> None:
    body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_INPUT") and "'z'" in msg
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (400, "INVALID_INPUT") and "'nope'" in msg


def test_unknown_model_is_404(served: ServerThread, client: Any) -> None:
    with pytest.raises(InferenceServerException) as ei:
        client.infer("no-such-model", [_infer_input("x", np.zeros((1, 4), np.float32), "FP32", True)])
    assert ei.value.status() == "404" and "no-such-model" in ei.value.message()
    status, code, _ = _error(httpx.get(f"{served.url}/v2/models/no-such-model"))
    assert (status, code) == (404, "MODEL_NOT_FOUND")
    status, code, _ = _error(httpx.get(f"{served.url}/v2/models/no-such-model/ready"))
    assert (status, code) == (404, "MODEL_NOT_FOUND")
    status, code, _ = _error(httpx.get(f"{served.url}/v2/nowhere"))
    assert (status, code) == (404, "NOT_FOUND")
    status, code, _ = _error(httpx.get(f"{served.url}/v2/models/affine/infer"))
    assert (status, code) == (405, "METHOD_NOT_ALLOWED")


def test_oversize_body_is_413(served: ServerThread) -> None:
    big = b"{" + b" " * (300 * 1024) + b"}"
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", content=big))
    assert (status, code) == (413, "PAYLOAD_TOO_LARGE") and str(256 * 1024) in msg

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(40):
            yield b" " * 8192

    status, code, _ = _error(httpx.post(f"{served.url}/v2/models/affine/infer", content=chunks()))
    assert (status, code) == (413, "PAYLOAD_TOO_LARGE")


def test_error_from_model_through_engine_to_api(served: ServerThread) -> None:
    """Phase 8: an error raised inside the model (a real torch failure) reaches the client typed."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [666, 0, 0, 0]}]}
    status, code, msg = _error(httpx.post(f"{served.url}/v2/models/affine/infer", json=body))
    assert (status, code) == (500, "BACKEND_ERROR")
    assert "torch" in msg and "affine" in msg
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'inferox_request_failures_total{model="affine",version="1",protocol="rest",code="BACKEND_ERROR"}' in metrics


def test_queue_overflow_is_429_with_retry_after(served: ServerThread) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        r = httpx.post(f"{served.url}/v2/models/slow/infer", json=body, timeout=60)
        with lock:
            responses.append(r)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    full = next(r for r in responses if r.status_code == 429)
    assert full.json()["code"] == "QUEUE_FULL" and "slow" in full.json()["error"]
    assert int(full.headers["retry-after"]) >= 1


def test_request_timeout_is_504(served: ServerThread, client: Any) -> None:
    wait_until(lambda: httpx.get(f"{served.url}/v2/models/slow/ready").status_code == 200)
    with pytest.raises(InferenceServerException) as ei:
        # tritonclient's `timeout` is in microseconds: 50 ms against a 400 ms model.
        client.infer("slow", [_infer_input("x", np.ones((1, 4), np.float32), "FP32", True)], timeout=50_000)
    assert ei.value.status() == "504" and "slow" in ei.value.message()


def test_client_disconnect_drops_the_request(served: ServerThread) -> None:
    """A request whose client went away while it waited in the queue never reaches the model."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    server: InferoxServer = served.server
    model = server.models["slow"].primary.model
    before = server.metrics.failures("slow", "CLIENT_DISCONNECTED")
    forwards_before = len(model.batch_sizes)
    busy = threading.Thread(target=lambda: httpx.post(f"{served.url}/v2/models/slow/infer", json=body, timeout=60))
    busy.start()  # occupies the model for 0.4 s
    assert wait_until(lambda: len(model.batch_sizes) == forwards_before + 1)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{served.url}/v2/models/slow/infer", json=body, timeout=0.1)  # queued behind it, then gone
    busy.join(60)
    assert wait_until(lambda: server.metrics.failures("slow", "CLIENT_DISCONNECTED") == before + 1, timeout=10)
    time.sleep(0.5)  # had the dropped request run, it would have by now
    assert len(model.batch_sizes) == forwards_before + 1


def test_metrics_in_prometheus_format(served: ServerThread, client: Any) -> None:
    client.infer("affine", [_infer_input("x", np.ones((3, 4), np.float32), "FP32", True)])
    r = httpx.get(f"{served.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for family in ("inferox_requests_total", "inferox_request_failures_total", "inferox_queue_seconds", "inferox_compute_seconds", "inferox_batch_size", "inferox_models_loaded"):
        assert f"# TYPE {family} " in text
    assert "inferox_models_loaded 3" in text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(lines['inferox_requests_total{model="affine",version="1",protocol="rest",outcome="success"}']) >= 1
    count = int(lines['inferox_batch_size_count{model="affine",version="1",protocol="rest"}'])
    assert int(lines['inferox_batch_size_bucket{model="affine",version="1",protocol="rest",le="+Inf"}']) == count >= 1
    assert float(lines['inferox_compute_seconds_sum{model="affine",version="1",protocol="rest"}']) > 0


def test_access_log_has_request_id(served: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    body = {"id": "log-me-7", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        assert httpx.post(f"{served.url}/v2/models/affine/infer", json=body).status_code == 200
        assert wait_until(lambda: any("log-me-7" in r.getMessage() for r in caplog.records), timeout=5)
    record = json.loads(next(r.getMessage() for r in caplog.records if "log-me-7" in r.getMessage()))
    assert record["request_id"] == "log-me-7" and record["status"] == 200 and record["model"] == "affine"
    assert record["endpoint"] == "POST /v2/models/affine/infer" and record["protocol"] == "rest" and record["duration_ms"] > 0
    # duration_ms runs to the response's last byte written; handler_ms stops when the endpoint returns.
    assert 0 < record["handler_ms"] <= record["duration_ms"]


def test_repository_endpoints_need_the_token(served: ServerThread) -> None:
    status, code, _ = _error(httpx.post(f"{served.url}/v2/repository/index"))
    assert (status, code) == (401, "UNAUTHORIZED")
    status, code, _ = _error(httpx.post(f"{served.url}/v2/repository/models/affine/unload", headers={"authorization": "Bearer wrong"}))
    assert (status, code) == (401, "UNAUTHORIZED")
    r = httpx.post(f"{served.url}/v2/repository/index", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    names = {e["name"]: e for e in r.json()}
    assert names["affine"]["state"] == "READY" and names["echo"]["version"] == "1"
    # The inference endpoints stay open without protect_all.
    assert httpx.get(f"{served.url}/v2/health/ready").status_code == 200


def test_model_statistics(served: ServerThread, client: Any) -> None:
    client.infer("affine", [_infer_input("x", np.ones((2, 4), np.float32), "FP32", True)])
    stats = client.get_inference_statistics("affine")["model_stats"][0]
    assert stats["name"] == "affine" and stats["version"] == "1"
    assert stats["inference_count"] >= 1 and stats["execution_count"] >= 1
    assert stats["inference_stats"]["compute_infer"]["count"] >= 1 and stats["inference_stats"]["compute_infer"]["ns"] > 0
    assert sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]
    assert stats["inferox"]["requests_by_backend"]["torch"] >= 1
    everything = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everything} >= {"affine", "echo", "slow"}
    with pytest.raises(InferenceServerException) as ei:
        client.get_inference_statistics("ghost")
    assert ei.value.status() == "404"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(client: Any, algorithm: str) -> None:
    x = np.random.default_rng(5).standard_normal((64, 4)).astype(np.float32)
    result = client.infer(
        "affine",
        [_infer_input("x", x, "FP32", True)],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=True)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(result.as_numpy("y"), 2 * x + 1, rtol=1e-6)


def test_compression_errors(served: ServerThread) -> None:
    import gzip

    r = httpx.post(f"{served.url}/v2/models/affine/infer", content=b"plain", headers={"content-encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT") and "gzip" in r.json()["error"]
    r = httpx.post(f"{served.url}/v2/models/affine/infer", content=b"{}", headers={"content-encoding": "br"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT") and "'br'" in r.json()["error"]
    bomb = gzip.compress(b" " * (2 * 1024 * 1024))  # ~2 KiB that expands past the 256 KiB limit
    r = httpx.post(f"{served.url}/v2/models/affine/infer", content=bomb, headers={"content-encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
