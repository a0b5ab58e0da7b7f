"""A model repository of real packages served over loopback: versions, serving settings, text
requests to the real MiniLM on torch and on jax, the repository extension and its safety."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inferox.core import get_registry
from inferox.core.errors import ConfigError, InvalidInputError, ModelNotFoundError, UnsafePackageError
from inferox.engine.server import InferoxServer, ModelRepository, ServerConfig, ServerThread, ServingSettings, check_model_name
from tests.support.packages import minilm_reference

TOKEN = "repo-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path, minilm_package: Path) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "models").mkdir()
    models = root / "models"
    shutil.copytree(mlp_package, models / "mlp" / "1")
    shutil.copytree(mlp_package, models / "mlp" / "2")
    (models / "mlp" / "serving.toml").write_text('backend = "torch"\nmax_batch_size = 4\nbatch_delay_ms = 1\n')
    shutil.copytree(minilm_package, models / "minilm")
    (models / "minilm" / "serving.toml").write_text('backends = ["torch", "jax"]\nmax_batch_size = 8\ntimeout_s = 60\n')
    # A package outside the repository, and a symlink inside pointing at it.
    shutil.copytree(mlp_package, root / "outside")
    (models / "escape").symlink_to(root / "outside", target_is_directory=True)
    return models


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[ServerThread]:
    server = InferoxServer(repository=repo, config=ServerConfig(token=TOKEN, exit_on_error=False))
    with ServerThread(server) as st:
        yield st


def _mlp_reference(pkg: Path, x: np.ndarray, backend: str = "torch") -> np.ndarray:
    from inferox.mlpkg import load_model

    return load_model(pkg, backend=backend).forward_any({"input": x})["output"]


def test_repository_models_load_at_startup(served: ServerThread, triton: Any) -> None:
    client = triton(served.address)
    # The escape symlink resolves outside the repository: refused at startup, so the server is not ready.
    assert not client.is_server_ready()
    index = {e["name"]: e for e in httpx.post(f"{served.url}/v2/repository/index", headers=AUTH).json()}
    assert index["mlp"]["state"] == "READY" and index["mlp"]["version"] == "2"
    assert index["minilm"]["state"] == "READY"
    assert index["escape"]["state"] == "UNAVAILABLE" and "UNSAFE_PACKAGE" in index["escape"]["reason"]
    ready_only = httpx.post(f"{served.url}/v2/repository/index", headers=AUTH, json={"ready": True}).json()
    assert {e["name"] for e in ready_only} == {"mlp", "minilm"}
    assert client.is_model_ready("mlp") and client.is_model_ready("minilm")


def test_versions_serve_the_latest(served: ServerThread, triton: Any, mlp_package: Path) -> None:
    client = triton(served.address)
    meta = client.get_model_metadata("mlp")
    assert meta["versions"] == ["2"] and meta["platform"] == "inferox_torch"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    inp = httpclient.InferInput("input", [5, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], model_version="2")
    np.testing.assert_allclose(result.as_numpy("output"), _mlp_reference(mlp_package, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [inp], model_version="1")
    assert ei.value.status() == "404"


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_minilm_answers_text_requests(served: ServerThread, triton: Any, minilm_package: Path, backend: str, binary: bool) -> None:
    if backend not in get_registry().backends_for("bert"):
        pytest.skip(f"{backend} does not implement bert here")
    client = triton(served.address)
    meta = client.get_model_metadata("minilm")
    assert {"name": "text", "datatype": "BYTES", "shape": [-1]} in meta["inputs"]
    assert set(meta["parameters"]["backends"]) == {"torch", "jax"}
    texts = ["A man is eating food.", "Inferox serves models on any backend.", "The quick brown fox jumps over the lazy dog."]
    inp = httpclient.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=binary)
    result = client.infer("minilm", [inp], parameters={"backend": backend}, request_id=f"text-{backend}")
    response = result.get_response()
    assert response["parameters"]["backend"] == backend and response["id"] == f"text-{backend}"
    ref = minilm_reference(minilm_package, texts)
    names = {o["name"] for o in response["outputs"]}
    # A sentence-transformers package answers with its default output unless asked for others.
    assert names == {"sentence_embedding"} and set(ref) >= {"sentence_embedding", "last_hidden_state"}
    for name in names:
        got = result.as_numpy(name)
        assert got.dtype == np.float32 and got.shape == ref[name].shape and got.shape[0] == 3
        np.testing.assert_allclose(got, ref[name], atol=3e-4)
    first = result.as_numpy("sentence_embedding")
    assert first.shape[-1] == 384 and np.all(np.isfinite(first)) and not np.allclose(first[0], first[1])


def test_text_to_a_model_without_tokenizer_is_400(served: ServerThread) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    r = httpx.post(f"{served.url}/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_INPUT" and "takes no text" in r.json()["error"]


def test_unload_then_load_from_repository(served: ServerThread, triton: Any) -> None:
    client = triton(served.address)
    client.unload_model("mlp", headers=AUTH)
    assert "mlp" not in served.server.models
    with pytest.raises(InferenceServerException) as ei:
        client.get_model_metadata("mlp")
    assert ei.value.status() == "404"
    index = {e["name"]: e for e in client.get_model_repository_index(headers=AUTH)}
    assert index["mlp"]["state"] == "UNAVAILABLE"
    client.load_model("mlp", headers=AUTH)
    assert client.is_model_ready("mlp")
    r = httpx.post(f"{served.url}/v2/models/mlp/infer", json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 3]
    # Reloading a loaded model swaps it in place.
    assert httpx.post(f"{served.url}/v2/repository/models/mlp/load", headers=AUTH).json()["state"] == "READY"
    r = httpx.post(f"{served.url}/v2/repository/models/nothere/unload", headers=AUTH)
    assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("..", 404, "NOT_FOUND"),  # the client normalises the dot segment away: no route matches
        ("...", 400, "INVALID_INPUT"),
        (".hidden", 400, "INVALID_INPUT"),
        ("%2E%2E", 400, "INVALID_INPUT"),
        ("..%2F..%2Foutside", 404, "NOT_FOUND"),  # a slash never reaches the repository: no route matches
        ("escape", 403, "UNSAFE_PACKAGE"),
        ("not-a-model", 404, "MODEL_NOT_FOUND"),
    ],
)
def test_load_from_outside_the_repository_is_refused(served: ServerThread, name: str, status: int, code: str) -> None:
    r = httpx.post(f"{served.url}/v2/repository/models/{name}/load", headers=AUTH)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert "outside" not in served.server.models


def test_load_of_a_broken_package_is_422(served: ServerThread, repo: Path) -> None:
    broken = repo / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    try:
        r = httpx.post(f"{served.url}/v2/repository/models/broken/load", headers=AUTH)
        assert r.status_code == 422 and r.json()["code"] == "PACKAGE_FORMAT_ERROR"
        index = {e["name"]: e for e in httpx.post(f"{served.url}/v2/repository/index", headers=AUTH).json()}
        assert index["broken"]["state"] == "UNAVAILABLE" and "PACKAGE_FORMAT_ERROR" in index["broken"]["reason"]
    finally:
        shutil.rmtree(broken)


def test_load_needs_the_token(served: ServerThread) -> None:
    r = httpx.post(f"{served.url}/v2/repository/models/mlp/load")
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and r.headers["www-authenticate"] == "Bearer"


# ------------------------------------------------------------------------------------------ unit level
def test_model_repository_checks_names_and_containment(repo: Path) -> None:
    repository = ModelRepository(repo)
    assert {"mlp", "minilm", "escape"} <= set(repository.names())
    entry = repository.entry("mlp")
    assert sorted(entry.versions) == ["1", "2"] and entry.latest == "2"
    assert entry.settings == ServingSettings(backends=("torch",), max_batch_size=4, batch_delay_ms=1.0)
    with pytest.raises(InvalidInputError) as ei:
        repository.entry("../outside")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "model_name" and ei.value.actual == "../outside"
    with pytest.raises(UnsafePackageError) as eu:
        repository.entry("escape")
    assert eu.value.code == "UNSAFE_PACKAGE" and eu.value.path is not None and eu.value.path.endswith("escape")
    with pytest.raises(ModelNotFoundError) as en:
        repository.entry("ghost")
    assert en.value.code == "MODEL_NOT_FOUND" and en.value.name == "ghost" and "mlp" in (en.value.available or [])
    with pytest.raises(ConfigError) as ec:
        ModelRepository(repo / "mlp" / "serving.toml")
    assert ec.value.code == "INVALID_CONFIG" and ec.value.field == "repository"


@pytest.mark.parametrize("name", ["a/b", "a\\b", "", "x" * 200, "..", "a..b", "-x", "sp ace", "tt\n", "mlp\n", "x" * 10_000])
def test_check_model_name_rejects_paths(name: str) -> None:
    """The whole name must match (``$`` let "tt\\n" through), and a name from the wire is echoed cut short."""
    with pytest.raises(InvalidInputError) as ei:
        check_model_name(name)
    assert ei.value.code == "INVALID_INPUT" and ei.value.actual == name[:80] and ei.value.details["name"] == "model_name"
    assert len(str(ei.value)) < 400  # bounded, whatever the name


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_batch_size = 0", "max_batch_size"),
        ("max_batch_size = true", "max_batch_size"),
        ("max_batch_tokens = -1", "max_batch_tokens"),
        ("batch_delay_ms = -1", "batch_delay_ms"),
        ("timeout_s = 0", "timeout_s"),
        ("backends = [1]", "backends"),
        ("device = 3", "device"),
        ("warmup = 'yes'", "warmup"),
        ("threads = 0", "threads"),
        ("threads = 1.5", "threads"),
        ("colour = 'blue'", "colour"),
    ],
)
def test_serving_settings_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "serving.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        ServingSettings.from_file(path)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field and ei.value.path == str(path)


def test_serving_settings_bad_toml_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "serving.toml"
    path.write_text("max_batch_size = [")
    with pytest.raises(ConfigError) as ei:
        ServingSettings.from_file(path)
    assert ei.value.path == str(path) and "invalid TOML" in ei.value.message
    mine = ServingSettings(max_batch_size=2)
    merged = mine.merged_over(ServingSettings(backends=("jax",), max_batch_size=9, warmup=False, device="cpu"))
    assert merged == ServingSettings(backends=("jax",), max_batch_size=2, warmup=False, device="cpu")


def test_unload_while_requests_are_in_flight(triton: Any) -> None:
    from .conftest import AffineModel

    server = InferoxServer(config=ServerConfig())
    server.add_model("slow", AffineModel("slow", delay=0.3), settings=ServingSettings(max_batch_size=1, batch_delay_ms=0.0))
    with ServerThread(server) as st:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        results: list[httpx.Response] = []

        def call() -> None:
            results.append(httpx.post(f"{st.url}/v2/models/slow/infer", json=body, timeout=60))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        # Unload once all four are accepted (one arriving after the unload is rightly refused).
        assert _wait(lambda: server.models["slow"].in_flight == 4)
        r = httpx.post(f"{st.url}/v2/repository/models/slow/unload", timeout=60)
        for t in threads:
            t.join(60)
        assert r.status_code == 200
        # Every request accepted before the unload finished, with the right answer.
        assert [x.status_code for x in results] == [200] * 4
        assert all(x.json()["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0] for x in results)
        after = httpx.post(f"{st.url}/v2/models/slow/infer", json=body)
        assert after.status_code == 404 and after.json()["code"] == "MODEL_NOT_FOUND"
        # Not in a repository: it cannot be loaded back.
        again = httpx.post(f"{st.url}/v2/repository/models/slow/load")
        assert again.status_code == 404


def _wait(predicate: Any, timeout: float = 20.0) -> bool:
    from tests.support.net import wait_until

    return wait_until(predicate, timeout=timeout)


def test_concurrent_text_requests_of_different_lengths_are_batched_exactly(served: ServerThread, minilm_package: Path) -> None:
    """Requests padded together by the dynamic batcher come back exactly as if run alone."""
    from inferox.core.text import TextEncoder
    from inferox.mlpkg import load_model

    texts = ["hi", "a considerably longer sentence, with many more tokens in it than the first one", "medium length text", "x y"]
    replies: dict[int, dict[str, Any]] = {}

    def call(i: int) -> None:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [texts[i % 4]]}], "parameters": {"backend": "torch"}}
        replies[i] = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body, timeout=60).json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    model = load_model(minilm_package, backend="torch")
    encoder = TextEncoder.from_file(minilm_package / "tokenizer.json")
    names = {s.name for s in model.input_specs}
    for i in range(12):
        ref = model.forward_any({k: v for k, v in encoder.encode([texts[i % 4]]).items() if k in names})
        outs = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in replies[i]["outputs"]}
        assert set(outs) == {"sentence_embedding"}  # the package's default output
        for name, value in outs.items():
            assert value.shape == ref[name].shape
            np.testing.assert_allclose(value, ref[name], atol=3e-4)


def test_text_max_length_and_bad_text(served: ServerThread) -> None:
    long_text = "one two three four five six seven eight nine ten eleven twelve"
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [long_text], "parameters": {"max_length": 6}}],
            "outputs": [{"name": "last_hidden_state"}]}
    r = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [1, 6, 384]
    body["inputs"][0]["parameters"] = {"max_length": "long"}
    r = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body)
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT") and "max_length" in r.json()["error"]
    raw = b"\xff\xfe"
    head = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 4 + len(raw)}}]}).encode()
    r = httpx.post(f"{served.url}/v2/models/minilm/infer", content=head + len(raw).to_bytes(4, "little") + raw, headers={"Inference-Header-Content-Length": str(len(head))})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT") and "UTF-8" in r.json()["error"]


def test_long_texts_are_tokenised_off_the_event_loop(minilm_package: Path) -> None:
    """A short text is tokenised on the event loop (cheaper than a thread hand-off); one longer than
    TOKENISE_INLINE_BYTES on the data plane's own tokeniser thread. Both answer exactly."""
    from inferox.core.text import TextEncoder
    from inferox.engine.server._dataplane import TOKENISE_INLINE_BYTES
    from inferox.mlpkg import load_model

    server = InferoxServer(packages={"minilm": minilm_package})
    prefix = f"inferox-tokenise-{id(server.dataplane):x}"
    short = "a short sentence"
    long = " ".join(["a longer text that keeps going"] * 12)
    assert len(short.encode()) <= TOKENISE_INLINE_BYTES < len(long.encode())

    def ask(text: str) -> np.ndarray:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}], "outputs": [{"name": "sentence_embedding"}]}
        r = httpx.post(f"{st.url}/v2/models/minilm/infer", json=body, timeout=60)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], np.float32).reshape(out["shape"])

    def tokeniser_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]

    model = load_model(minilm_package, backend="torch")
    encoder = TextEncoder.from_file(minilm_package / "tokenizer.json")
    names = {s.name for s in model.input_specs}
    with ServerThread(server) as st:
        got_short = ask(short)
        assert tokeniser_threads() == []
        got_long = ask(long)
        assert len(tokeniser_threads()) == 1
    for text, got in ((short, got_short), (long, got_long)):
        ref = model.forward_any({k: v for k, v in encoder.encode([text]).items() if k in names})["sentence_embedding"]
        np.testing.assert_allclose(got, ref, atol=3e-4)


def test_threads_reach_each_models_backend(tmp_path: Path, mlp_package: Path) -> None:
    """``threads`` (serving.toml, or ``--threads`` / ``[models] threads`` for every model) is the
    backend's intra-op thread count: on onnx each model's own session option."""
    pytest.importorskip("inferox.onnx")
    import asyncio

    from inferox.engine.server import DataPlane

    root = tmp_path / "repo"
    shutil.copytree(mlp_package, root / "one")
    (root / "one" / "serving.toml").write_text('backend = "onnx"\nthreads = 1\n')
    shutil.copytree(mlp_package, root / "two")
    (root / "two" / "serving.toml").write_text('backend = "onnx"\n')

    async def scenario() -> dict[str, int | None]:
        dp = DataPlane(config=ServerConfig(defaults=ServingSettings(threads=2)), repository=root)
        try:
            await dp.load("one")
            await dp.load("two")
            return {name: dp.models[name].primary.model.threads for name in ("one", "two")}
        finally:
            await dp.shutdown()

    # The model's own setting wins over the server-wide default.
    assert asyncio.run(scenario()) == {"one": 1, "two": 2}

