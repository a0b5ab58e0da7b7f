"""OpenTelemetry tracing (the ``[otel]`` extra), configured by the standard ``OTEL_*`` variables,
checked against a real OTLP/HTTP receiver: the SDK's own exporter posts protobuf export requests
to a small HTTP endpoint this test runs, which decodes them with the OTLP protobuf definitions.

A caller's W3C ``traceparent`` — an HTTP header, gRPC metadata — is the parent of the request's
span; under it: ``tokenize``, ``queue``, ``forward`` (batch size, tokens) and ``encode``; the
trace id is in the access-log line.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread
from tests.support.net import wait_until

pytest.importorskip("opentelemetry.sdk.trace")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
tc_grpc = pytest.importorskip("tritonclient.grpc")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from inferox.engine.server._tracing import reset_tracing  # noqa: E402


class OTLPReceiver:
    """An OTLP/HTTP traces endpoint on loopback: decodes every export request it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.receive(self.path, self.headers.get("content-type", ""), body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.lock = threading.Lock()

    def receive(self, path: str, content_type: str, body: bytes) -> None:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in request.resource_spans:
                self.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {}
                        for a in span.attributes:
                            v = a.value
                            attrs[a.key] = v.int_value if v.HasField("int_value") else v.string_value
                        self.spans.append(
                            {
                                "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(), "kind": span.kind, "attributes": attrs,
                                "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                            }
                        )

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, minilm_package: Path, receiver: OTLPReceiver) -> Iterator[ServerThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    mp.setenv("OTEL_SERVICE_NAME", "inferox-under-test")
    mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    reset_tracing()
    repo = tmp_path_factory.mktemp("traced") / "models"
    shutil.copytree(minilm_package, repo / "minilm")
    (repo / "minilm" / "serving.toml").write_text('backends = ["torch"]\n')
    server = InferoxServer(repository=repo, config=ServerConfig(grpc_port=0))
    assert server.dataplane.tracing is not None
    try:
        with ServerThread(server) as st:
            yield st
    finally:
        reset_tracing()
        mp.undo()


TRACE_REST, PARENT_REST = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACE_GRPC, PARENT_GRPC = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACE_OPENAI, PARENT_OPENAI = "5b8aa5a2d2c872e8321cf37308d69df2", "051581bf3cb55c13"


def _spans(receiver: OTLPReceiver, server: InferoxServer, trace_id: str, names: set[str]) -> list[dict[str, Any]]:
    assert server.dataplane.tracing is not None
    server.dataplane.tracing.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not names <= {s["name"] for s in receiver.trace(trace_id)}:
        time.sleep(0.05)
    return receiver.trace(trace_id)


def _check(spans: list[dict[str, Any]], root_name: str, parent: str, *, pool_stages: set[str]) -> dict[str, Any]:
    root = next(s for s in spans if s["name"] == root_name)
    assert root["parent"] == parent and root["kind"] == 2  # SPAN_KIND_SERVER, child of the caller's span
    assert root["attributes"]["inferox.model"] == "minilm" and root["attributes"]["http.response.status_code"] == 200
    children = {s["name"]: s for s in spans if s["parent"] == root["span_id"]}
    assert pool_stages | {"queue", "forward", "encode"} <= set(children), sorted(children)
    forward = children["forward"]
    assert forward["attributes"]["inferox.batch_size"] >= 1 and forward["attributes"]["inferox.tokens"] > 2
    assert root["start"] <= children["queue"]["start"] <= forward["start"] <= forward["end"] <= root["end"] + 5_000_000
    return root


def test_rest_and_grpc_requests_are_spans_under_the_callers_trace(traced: ServerThread, receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["A man is eating food.", "Hi."]}]}
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        r = httpx.post(f"{traced.url}/v2/models/minilm/infer", json=body, headers={"traceparent": f"00-{TRACE_REST}-{PARENT_REST}-01"})
        assert r.status_code == 200
        client = tc_grpc.InferenceServerClient(url=traced.grpc_address)
        text = tc_grpc.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"A man is riding a horse."], dtype=object))
        client.infer("minilm", [text], headers={"traceparent": f"00-{TRACE_GRPC}-{PARENT_GRPC}-01"})
        client.close()

        def logged() -> set[str]:
            return {json.loads(rec.getMessage())["trace_id"] for rec in caplog.records if rec.name == "inferox.server.access"}

        assert wait_until(lambda: {TRACE_REST, TRACE_GRPC} <= logged(), timeout=5)
    rest = _check(_spans(receiver, traced.server, TRACE_REST, {"tokenize", "forward", "encode"}), "POST /v2/models/minilm/infer", PARENT_REST, pool_stages={"tokenize"})
    grpc_root = _check(_spans(receiver, traced.server, TRACE_GRPC, {"tokenize", "forward", "encode"}), "ModelInfer", PARENT_GRPC, pool_stages={"tokenize"})
    assert rest["attributes"]["inferox.protocol"] == "rest" and grpc_root["attributes"]["inferox.protocol"] == "grpc"
    assert {"service.name": "inferox-under-test"}.items() <= receiver.resources[0].items()


def test_a_long_text_is_tokenised_on_the_pool_inside_the_trace(traced: ServerThread, receiver: OTLPReceiver) -> None:
    long_text = "A man is eating food in the park while the sun goes down. " * 20  # over the inline bound
    r = httpx.post(f"{traced.url}/v1/embeddings", json={"model": "minilm", "input": [long_text]}, headers={"traceparent": f"00-{TRACE_OPENAI}-{PARENT_OPENAI}-01"})
    assert r.status_code == 200
    root = _check(_spans(receiver, traced.server, TRACE_OPENAI, {"tokenize", "forward", "encode"}), "POST /v1/embeddings", PARENT_OPENAI, pool_stages={"tokenize"})
    assert root["attributes"]["inferox.protocol"] == "openai"


def test_a_request_without_traceparent_starts_its_own_trace(traced: ServerThread, receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture) -> None:
    def logged() -> list[dict[str, Any]]:
        return [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "inferox.server.access" and "solo-1" in rec.getMessage()]

    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        r = httpx.post(f"{traced.url}/v1/embeddings", json={"model": "minilm", "input": ["solo"]}, headers={"x-request-id": "solo-1"})
        assert r.status_code == 200
        assert wait_until(logged, timeout=5)  # logged once the response's last byte is written
    line = logged()[0]
    trace_id = line["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    spans = _spans(receiver, traced.server, trace_id, {"POST /v1/embeddings"})
    assert next(s for s in spans if s["name"] == "POST /v1/embeddings")["parent"] == ""


@pytest.mark.parametrize(
    ("value", "trace_id"),
    [
        (f"00-{TRACE_REST}-{PARENT_REST}-01", TRACE_REST),
        (f"00-{TRACE_REST.upper()}-{PARENT_REST}-00", TRACE_REST),  # case-insensitive, not sampled: still its trace
        (f"ff-{TRACE_REST}-{PARENT_REST}-01", None),  # version ff is invalid
        (f"00-{'0' * 32}-{PARENT_REST}-01", None),  # all-zero trace id
        (f"00-{TRACE_REST}-{'0' * 16}-01", None),  # all-zero parent id
        ("00-xyz-abc-01", None),
        ("", None),
        (None, None),
        ("0" * 10_000, None),
    ],
)
def test_traceparent_is_read_as_w3c_says(value: str | None, trace_id: str | None) -> None:
    from inferox.engine.server._tracing import parse_traceparent

    assert parse_traceparent(value) == trace_id


def test_tracing_follows_the_otel_variables(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import sys

    from inferox.engine.server._tracing import tracing_from_env

    reset_tracing()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert tracing_from_env({}) is None  # nothing asks for it
    assert tracing_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    sdk = sys.modules["opentelemetry.sdk.trace"]
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # the [otel] extra missing
    with caplog.at_level(logging.WARNING, logger="inferox.server"):
        assert tracing_from_env(endpoint) is None
    assert "pip install 'inferox-engine[otel]'" in caplog.text
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", sdk)
    console = tracing_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert console is not None and tracing_from_env({"OTEL_TRACES_EXPORTER": "console"}) is console  # one per process
    reset_tracing()
