"""V2 over gRPC on loopback, driven by the real tritonclient.grpc (sync and asyncio clients).

One server answers both protocols (``grpc_port``): the gRPC answers are compared with the REST
answers of the same server, and with the models run directly.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import DType, get_registry
from inferox.engine.server import InferoxServer, ServerConfig, ServerThread, ServingSettings
from tests.support.net import wait_until

from .conftest import ECHO_DTYPES, AffineModel, EchoModel

grpc = pytest.importorskip("grpc")
tc_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.grpc.aio as tc_grpc_aio  # noqa: E402
import tritonclient.http as tc_http  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from inferox.engine._proto import grpc_service_pb2 as pb  # noqa: E402
from inferox.engine._proto import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

TOKEN = "grpc-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
TEXTS = ["A man is eating food.", "Inferox serves models on any backend.", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path, minilm_package: Path) -> Path:
    models = tmp_path_factory.mktemp("grpc-repo") / "models"
    models.mkdir()
    shutil.copytree(mlp_package, models / "mlp" / "1")
    shutil.copytree(mlp_package, models / "mlp" / "2")
    shutil.copytree(minilm_package, models / "minilm")
    (models / "minilm" / "serving.toml").write_text('backends = ["torch", "jax"]\nmax_batch_size = 8\n')
    return models


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[ServerThread]:
    server = InferoxServer(repository=repo, config=ServerConfig(token=TOKEN, grpc_port=0, max_body_bytes=512 * 1024, request_timeout_s=30.0))
    server.add_model("echo", EchoModel())
    server.add_model("slow", AffineModel("slow", delay=0.5), settings=ServingSettings(max_batch_size=1, batch_delay_ms=0.0))
    with ServerThread(server) as st:
        yield st


@pytest.fixture()
def client(served: ServerThread) -> Iterator[Any]:
    c = tc_grpc.InferenceServerClient(url=served.grpc_address)
    yield c
    c.close()


def _status(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


# ------------------------------------------------------------------------------------- health, metadata
def test_health_metadata_and_readiness(client: Any, served: ServerThread) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "inferox" and "model_repository" in meta.extensions
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", model_version="2")
    # Not served: not ready (as REST's /ready answers), rather than an error.
    assert not client.is_model_ready("mlp", model_version="7") and not client.is_model_ready("nope")
    with grpc.insecure_channel(served.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING


def test_model_metadata_and_config(client: Any) -> None:
    meta = client.get_model_metadata("minilm")
    assert meta.name == "minilm" and meta.platform.startswith("inferox_")
    assert ("text", "BYTES", [-1]) in [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
    assert "sentence_embedding" in [t.name for t in meta.outputs]
    mlp = client.get_model_metadata("mlp", model_version="2")
    assert list(mlp.versions) == ["1", "2"] or list(mlp.versions) == ["2"]
    assert [(t.name, t.datatype, list(t.shape)) for t in mlp.inputs] == [("input", "FP32", [-1, 4])]
    config = client.get_model_config("mlp").config
    assert config.name == "mlp" and config.max_batch_size > 0
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("input", 11, [4])]  # 11: TYPE_FP32
    as_json = client.get_model_config("mlp", as_json=True)
    assert as_json["config"]["input"][0]["data_type"] == "TYPE_FP32"


# ------------------------------------------------------------------------------------------- inference
def _extremes(d: DType) -> np.ndarray:
    if d.is_bool:
        vals: list[Any] = [True, False, True, True, False, False]
    elif d.is_int:
        info = np.iinfo(d.to_numpy())
        vals = [int(info.min), int(info.max), 0, 1, int(info.max) - 1, int(info.min) + 1]
    else:
        vals = [-1.5, 1e-3, 0.1, -0.2, 123.25, 3.140625]
    return np.asarray(vals, dtype=object).astype(d.to_numpy()).reshape(2, 3)


def test_every_datatype_round_trips_raw(client: Any) -> None:
    inputs, outputs, sent = [], [], {}
    for d in ECHO_DTYPES:
        arr = _extremes(d)
        inp = tc_grpc.InferInput(f"IN_{d.v2_name}", list(arr.shape), d.v2_name)
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
        outputs.append(tc_grpc.InferRequestedOutput(f"OUT_{d.v2_name}"))
        sent[d.v2_name] = arr
    result = client.infer("echo", inputs, outputs=outputs, request_id="dtypes-1")
    assert result.get_response().id == "dtypes-1"
    for name, arr in sent.items():
        got = result.as_numpy(f"OUT_{name}")
        assert got.dtype == arr.dtype, name
        np.testing.assert_array_equal(got, arr)


def test_typed_contents_through_a_plain_grpc_stub(served: ServerThread, mlp_package: Path) -> None:
    from inferox.mlpkg import load_model

    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    req = pb.ModelInferRequest(model_name="mlp", id="typed")
    req.inputs.add(name="input", datatype="FP32", shape=[3, 4]).contents.fp32_contents.extend(x.reshape(-1).tolist())
    with grpc.insecure_channel(served.grpc_address) as channel:
        resp = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req)
    assert (resp.model_name, resp.model_version, resp.id) == ("mlp", "2", "typed")
    got = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(list(resp.outputs[0].shape))
    ref = load_model(mlp_package, backend="torch").forward_any({"input": x})["output"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _texts_input(module: Any) -> Any:
    inp = module.InferInput("text", [len(TEXTS)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    return inp


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_text_embeddings_equal_rest_on_both_backends(client: Any, served: ServerThread, backend: str) -> None:
    if backend not in get_registry().backends_for("bert"):
        pytest.skip(f"{backend} does not implement bert here")
    out = [tc_grpc.InferRequestedOutput("sentence_embedding")]
    result = client.infer("minilm", [_texts_input(tc_grpc)], outputs=out, parameters={"backend": backend}, request_id=f"g-{backend}")
    response = result.get_response()
    assert response.parameters["backend"].string_param == backend and response.id == f"g-{backend}"
    got = result.as_numpy("sentence_embedding")
    assert got.shape == (3, 384) and got.dtype == np.float32
    rest = tc_http.InferenceServerClient(url=served.address)
    try:
        ref = rest.infer("minilm", [_texts_input(tc_http)], outputs=[tc_http.InferRequestedOutput("sentence_embedding")], parameters={"backend": backend})
    finally:
        rest.close()
    np.testing.assert_allclose(got, ref.as_numpy("sentence_embedding"), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- errors
def test_errors_map_to_grpc_status_codes(client: Any, served: ServerThread) -> None:
    x = tc_grpc.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("nope", [x])
    assert _status(ei.value) == "NOT_FOUND" and "'nope' not found" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [x], model_version="9")
    assert _status(ei.value) == "NOT_FOUND" and "mlp/versions/9" in ei.value.message()
    bad = tc_grpc.InferInput("input", [1, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [bad])
    assert _status(ei.value) == "INVALID_ARGUMENT" and "input" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [_texts_input(tc_grpc)])
    assert _status(ei.value) == "INVALID_ARGUMENT" and "takes no text" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [x], outputs=[tc_grpc.InferRequestedOutput("nope")])
    assert _status(ei.value) == "INVALID_ARGUMENT" and "'nope'" in ei.value.message()
    # parameters.timeout (µs) shortens the deadline: the slow model takes 0.5 s.
    s = tc_grpc.InferInput("x", [1, 4], "FP32")
    s.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("slow", [s], timeout=50_000)  # sent as the request's parameters.timeout
    assert _status(ei.value) == "DEADLINE_EXCEEDED" and "timed out" in ei.value.message()
    # A message over the REST body limit is refused by gRPC itself, before any decoding.
    big = tc_grpc.InferInput("input", [40_000, 4], "FP32")
    big.set_data_from_numpy(np.zeros((40_000, 4), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [big])
    assert _status(ei.value) == "RESOURCE_EXHAUSTED" and str(512 * 1024) in ei.value.message()
    # The server keeps answering.
    assert client.infer("mlp", [x]).as_numpy("output").shape == (1, 3)


def test_the_inferox_code_travels_in_trailing_metadata(served: ServerThread) -> None:
    req = pb.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="input", datatype="FP77", shape=[1]).contents.fp32_contents.append(1.0)
    with grpc.insecure_channel(served.grpc_address) as channel, pytest.raises(grpc.RpcError) as ei:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req)
    err: Any = ei.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP77" in err.details()
    assert dict(err.trailing_metadata())["inferox-error-code"] == "INVALID_DTYPE"


def test_unsupported_rpcs_are_unimplemented(client: Any, served: ServerThread) -> None:
    with pytest.raises(InferenceServerException) as ei:
        client.get_system_shared_memory_status()
    assert _status(ei.value) == "UNIMPLEMENTED" and "SystemSharedMemoryStatus" in ei.value.message()
    with grpc.insecure_channel(served.grpc_address) as channel, pytest.raises(grpc.RpcError) as ei2:
        pb_grpc.GRPCInferenceServiceStub(channel).TraceSetting(pb.TraceSettingRequest())
    assert ei2.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ repository, statistics
def test_repository_rpcs_need_the_token(client: Any, served: ServerThread) -> None:
    with pytest.raises(InferenceServerException) as ei:
        client.get_model_repository_index()
    assert _status(ei.value) == "UNAUTHENTICATED" and "bearer token" in ei.value.message()
    with pytest.raises(InferenceServerException) as ei:
        client.unload_model("mlp", headers={"authorization": "Bearer wrong"})
    assert _status(ei.value) == "UNAUTHENTICATED"
    index = {m.name: m for m in client.get_model_repository_index(headers=AUTH).models}
    assert index["mlp"].state == "READY" and index["minilm"].state == "READY"

    client.unload_model("mlp", headers=AUTH)
    assert wait_until(lambda: not client.is_model_ready("mlp"), timeout=10)
    assert {m.name: m.state for m in client.get_model_repository_index(headers=AUTH).models}["mlp"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as ei:
        client.unload_model("mlp", headers=AUTH)
    assert _status(ei.value) == "NOT_FOUND"
    client.load_model("mlp", headers=AUTH)
    assert client.is_model_ready("mlp")
    with pytest.raises(InferenceServerException) as ei:
        client.load_model("../etc", headers=AUTH)
    assert _status(ei.value) == "INVALID_ARGUMENT" and "../etc" in ei.value.message()


def test_statistics_count_grpc_requests(client: Any) -> None:
    x = tc_grpc.InferInput("input", [2, 4], "FP32")
    x.set_data_from_numpy(np.ones((2, 4), np.float32))
    before = client.get_inference_statistics("mlp").model_stats
    count = sum(s.inference_count for s in before)
    answered = sum(s.inference_stats.success.count for s in before)
    for _ in range(3):
        client.infer("mlp", [x])
    after = client.get_inference_statistics("mlp").model_stats
    # Triton's meaning: inference_count counts rows (3 requests of 2), success.count requests.
    assert sum(s.inference_count for s in after) == count + 6
    assert sum(s.inference_stats.success.count for s in after) == answered + 3
    assert {s.name for s in client.get_inference_statistics().model_stats} >= {"mlp", "minilm", "echo"}
    with pytest.raises(InferenceServerException) as ei:
        client.get_inference_statistics("nope")
    assert _status(ei.value) == "NOT_FOUND"


# ----------------------------------------------------------------------------------------- asyncio client
def test_asyncio_client(served: ServerThread) -> None:
    async def main() -> None:
        c = tc_grpc_aio.InferenceServerClient(url=served.grpc_address)
        try:
            assert await c.is_server_live() and await c.is_server_ready() and await c.is_model_ready("minilm")
            assert (await c.get_server_metadata()).name == "inferox"
            assert (await c.get_model_metadata("minilm")).name == "minilm"
            assert (await c.get_model_config("mlp")).config.name == "mlp"
            out = [tc_grpc_aio.InferRequestedOutput("sentence_embedding")]
            # Concurrent calls: the engine's batcher serves them together; each answer is its own.
            results = await asyncio.gather(*[c.infer("minilm", [_texts_input(tc_grpc_aio)], outputs=out, request_id=f"a{i}") for i in range(6)])
            first = results[0].as_numpy("sentence_embedding")
            for i, r in enumerate(results):
                assert r.get_response().id == f"a{i}"
                np.testing.assert_allclose(r.as_numpy("sentence_embedding"), first, atol=1e-5)
            with pytest.raises(InferenceServerException) as ei:
                await c.get_model_metadata("nope")
            assert _status(ei.value) == "NOT_FOUND"
            assert [m.name for m in (await c.get_model_repository_index(headers=AUTH)).models]
            stats = await c.get_inference_statistics("minilm")
            assert sum(s.inference_count for s in stats.model_stats) >= 6
        finally:
            await c.close()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------- protect_all
@pytest.fixture(scope="module")
def protected() -> Iterator[ServerThread]:
    server = InferoxServer(config=ServerConfig(token=TOKEN, protect_all=True, grpc_port=0))
    server.add_model("affine", AffineModel())
    with ServerThread(server) as st:
        yield st


def test_protect_all_covers_every_rpc_but_health(protected: ServerThread) -> None:
    c = tc_grpc.InferenceServerClient(url=protected.grpc_address)
    try:
        for call in (c.is_server_live, c.is_server_ready, c.get_server_metadata, lambda: c.get_model_metadata("affine"), lambda: c.get_inference_statistics()):
            with pytest.raises(InferenceServerException) as ei:
                call()
            assert _status(ei.value) == "UNAUTHENTICATED"
        assert c.is_server_live(headers=AUTH) and c.get_model_metadata("affine", headers=AUTH).name == "affine"
        x = tc_grpc.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        np.testing.assert_array_equal(c.infer("affine", [x], headers=AUTH).as_numpy("y"), np.full((1, 4), 3.0, np.float32))
    finally:
        c.close()
    with grpc.insecure_channel(protected.grpc_address) as channel:
        # Probes send no metadata: the standard health service stays open.
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


# ------------------------------------------------------------------------------------- docs snippets
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _snippet(name: str) -> str:
    """The ```python block right after ``<!-- snippet: NAME -->`` in docs/serving.md."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"<!-- snippet: {name} -->")
    body = text[text.index("```python\n", start) + len("```python\n") :]
    return body[: body.index("```")]


@pytest.mark.parametrize("name", ["rest", "grpc", "openai"])
def test_docs_snippets_run_verbatim(name: str, served: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code = _snippet(name)
    # The only change: the documented addresses become this server's (its ports are free ones).
    code = code.replace("localhost:8001", served.grpc_address).replace("localhost:8000", served.address)
    expected = [line.split("# ")[1].strip() for line in code.splitlines() if line.startswith("print(")]
    exec(compile(code, f"docs/serving.md#{name}", "exec"), {"__name__": f"snippet_{name}"})
    assert capsys.readouterr().out.strip().splitlines() == expected


# ------------------------------------------------------------------------------- start-up and overload
def test_grpc_port_without_the_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from inferox.core.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "grpc_health.v1", None)  # what an environment without grpcio-health-checking imports
    with pytest.raises(BackendUnavailableError) as ei:
        InferoxServer(config=ServerConfig(grpc_port=0))
    assert ei.value.code == "BACKEND_UNAVAILABLE" and "inferox-engine[grpc]" in ei.value.message and "grpc_health.v1" in ei.value.message
    InferoxServer(config=ServerConfig())  # REST alone never needs it


def test_a_taken_grpc_port_is_named(served: ServerThread) -> None:
    from inferox.core.errors import InferoxIOError

    taken = int(served.grpc_address.rsplit(":", 1)[1])
    with pytest.raises(InferoxIOError) as ei:
        InferoxServer(config=ServerConfig(grpc_port=taken))
    assert ei.value.code == "IO_ERROR" and f"127.0.0.1:{taken}" in ei.value.message


@pytest.fixture(scope="module")
def tiny_queue() -> Iterator[ServerThread]:
    server = InferoxServer(config=ServerConfig(grpc_port=0))
    server.add_model("slow", AffineModel("slow", delay=0.3), settings=ServingSettings(max_batch_size=1, max_queue_size=1, batch_delay_ms=0.0))
    with ServerThread(server) as st:
        yield st


def test_queue_full_is_resource_exhausted_with_retry_after(tiny_queue: ServerThread) -> None:
    """Overload is always answered typed: RESOURCE_EXHAUSTED with the code and a retry hint (or,
    for a request whose own deadline passed in the queue, DEADLINE_EXCEEDED with its code), never
    a bare status."""
    req = pb.ModelInferRequest(model_name="slow")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0] * 4)
    short = pb.ModelInferRequest()
    short.CopyFrom(req)
    short.parameters["timeout"].int64_param = 200_000  # 0.2 s, in V2's microseconds
    with grpc.insecure_channel(tiny_queue.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        calls = [stub.ModelInfer.future(short if i % 3 == 2 else req) for i in range(24)]
        outcomes = []
        for call in calls:
            try:
                call.result(timeout=60)
                outcomes.append("ok")
            except grpc.RpcError as exc:
                outcomes.append(exc)
    refused = [e for e in outcomes if not isinstance(e, str)]
    assert "ok" in outcomes and refused, outcomes
    full = [e for e in refused if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert full
    for err in refused:
        trailing = dict(err.trailing_metadata())
        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert "full" in err.details() and trailing["inferox-error-code"] == "QUEUE_FULL" and int(trailing["retry-after"]) >= 1
        else:
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and trailing["inferox-error-code"] == "TIMEOUT", (err.code(), err.details())


def test_serve_help_names_the_protocols() -> None:
    from click.testing import CliRunner

    from inferox.engine.cli import cli

    out = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    assert "Open Inference Protocol (KServe V2) over HTTP" in out and "V2 over gRPC on --grpc-port" in out and "/v1/embeddings" in out
    assert "--grpc-port" in out and "--no-truncate-text" in out


def test_grpc_and_truncation_settings_are_layered(tmp_path: Path) -> None:
    from inferox.core.errors import ConfigError
    from inferox.engine.server._settings import resolve

    conf = tmp_path / "serve.toml"
    conf.write_text("[server]\ngrpc_port = 9101\ntruncate_text = false\n")
    got = resolve(file=conf, environ={})
    assert (got.config.grpc_port, got.config.truncate_text) == (9101, False)
    assert got.sources["server.grpc_port"] == (9101, "file")
    env = resolve(file=conf, environ={"INFEROX_SERVER_GRPC_PORT": "9102", "INFEROX_SERVER_TRUNCATE_TEXT": "true"})
    assert (env.config.grpc_port, env.config.truncate_text) == (9102, True)
    assert resolve(file=conf, environ={"INFEROX_SERVER_GRPC_PORT": "none"}, flags={"server.grpc_port": 9103}).config.grpc_port == 9103
    assert resolve(environ={}).config.grpc_port is None  # off unless asked for
    with pytest.raises(ConfigError) as ei:
        resolve(environ={"INFEROX_SERVER_GRPC_PORT": "grpc"})
    assert ei.value.field == "INFEROX_SERVER_GRPC_PORT"
    conf.write_text("[server]\ngrpc_port = 70000\n")
    with pytest.raises(ConfigError) as ei:
        resolve(file=conf, environ={})
    assert (ei.value.field, ei.value.value, ei.value.path) == ("server.grpc_port", 70000, str(conf))
    conf.write_text('[server]\ntruncate_text = "no"\n')
    with pytest.raises(ConfigError) as ei:
        resolve(file=conf, environ={})
    assert ei.value.field == "server.truncate_text"


def test_ray_deployments_refuse_a_grpc_port(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from inferox.engine.cli import cli

    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--ray", "--grpc-port", "9100"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "error [INVALID_CONFIG]:" in result.output and "--grpc-port" in result.output
