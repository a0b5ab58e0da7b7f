"""The Ray Serve deployment on a real local Ray cluster, driven by real clients (tritonclient.http,
openai, httpx): one deployment behind Ray's proxy (one hop), the V2 endpoints, `/v1/embeddings`
equal to `inferox serve`'s answer, versions, timeouts and `/metrics` through the data plane, MiniLM
text requests on torch and on jax, multiplexing across models, and a replica killed under load."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.net import wait_until
from tests.support.packages import minilm_reference

from . import raykit

pytestmark = pytest.mark.timeout(240)

TEXTS = ["A man is eating food.", "Inferox serves models on any backend.", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path, minilm_package: Path) -> Path:
    root = tmp_path_factory.mktemp("ray-repo")
    raykit.add_model(root, "mlp", mlp_package)
    raykit.add_model(root, "mlp_b", mlp_package)
    raykit.add_model(root, "minilm", minilm_package, backends=("torch", "jax"), extra="max_batch_size = 8\n")
    # Two versions of one model, both served (Triton's "all" policy).
    for version in ("1", "2"):
        shutil.copytree(mlp_package, root / "mlpv" / version)
    (root / "mlpv" / "serving.toml").write_text('backends = ["torch"]\n[version_policy]\nall = true\n')
    return root


@pytest.fixture(scope="module")
def deployed(ray_cluster: str, repo: Path) -> Iterator[str]:
    """The repository deployed as application 'inferox' with two replicas; the ingress address."""
    from ray import serve

    from inferox.engine.ray import APP_NAME, build_app, serve_on_ray

    host, port = ray_cluster.split(":")
    app = build_app(repo, replicas=2, num_cpus=0.5, max_models_per_replica=2, health_check_period_s=1.0)
    serve_on_ray(app, host=host, port=int(port), blocking=False)
    try:
        yield ray_cluster
    finally:
        serve.delete(APP_NAME)


def _mlp_reference(package: Path, x: np.ndarray) -> np.ndarray:
    from inferox.mlpkg import load_model

    return np.asarray(load_model(package, backend="torch").forward_any({"input": x})["output"])


def test_v2_endpoints_through_tritonclient(deployed: str, mlp_package: Path) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(deployed, network_timeout=120.0)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "inferox" and "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("mlp")
    mmeta = client.get_model_metadata("mlp")
    assert mmeta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}] and mmeta["parameters"]["backends"] == ["torch"]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    for binary in (True, False):
        inp = httpclient.InferInput("input", [5, 4], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("output", binary_data=binary)
        result = client.infer("mlp", [inp], outputs=[out], request_id=f"ray-{binary}")
        assert result.get_response()["id"] == f"ray-{binary}"
        np.testing.assert_allclose(result.as_numpy("output"), _mlp_reference(mlp_package, x), rtol=1e-5, atol=1e-6)
    index = client.get_model_repository_index()
    assert [m["name"] for m in index] == ["minilm", "mlp", "mlp_b", "mlpv"]
    client.load_model("mlp_b")
    with pytest.raises(InferenceServerException) as ei:
        client.infer("ghost", [inp])
    assert ei.value.status() == "404" and "ghost" in ei.value.message()
    bad = httpclient.InferInput("input", [1, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException) as ei:
        client.infer("mlp", [bad])
    assert ei.value.status() == "400"
    r = httpx.post(f"http://{deployed}/v2/models/mlp/infer", content=b"{not json", timeout=60)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_INPUT"
    client.close()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_minilm_text_on_each_backend(deployed: str, minilm_package: Path, backend: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(deployed, network_timeout=180.0)
    inp = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=True)
    result = client.infer("minilm", [inp], parameters={"backend": backend}, request_id=f"text-{backend}")
    response = result.get_response()
    assert response["parameters"]["backend"] == backend and response["id"] == f"text-{backend}"
    ref = minilm_reference(minilm_package, TEXTS)
    names = {o["name"] for o in response["outputs"]}
    assert names == {"sentence_embedding"}  # the package's default output (the others on request)
    for name in names:
        got = result.as_numpy(name)
        assert got.dtype == np.float32 and got.shape == ref[name].shape and got.shape[0] == 3
        np.testing.assert_allclose(got, ref[name], atol=3e-4)
    client.close()


def test_models_multiplex_across_replicas(deployed: str, mlp_package: Path) -> None:
    """Three models on two replicas of at most two models each: all keep answering correctly
    while Ray Serve places them and evicts the least recently used."""
    x = np.ones((2, 4), np.float32)
    expected = _mlp_reference(mlp_package, x)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]})
    with httpx.Client(base_url=f"http://{deployed}", timeout=120) as client:
        for _ in range(3):
            for name in ("mlp", "mlp_b"):
                r = client.post(f"/v2/models/{name}/infer", content=body)
                assert r.status_code == 200, r.text
                np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 3), expected, rtol=1e-5)
            assert client.get("/v2/models/minilm/ready").status_code == 200


def _replica_actors() -> list[Any]:
    import ray

    from inferox.engine.ray import DEPLOYMENT_NAME

    return [a for a in ray.util.list_named_actors(all_namespaces=True) if f"#{DEPLOYMENT_NAME}#" in a["name"]]


def _running_replicas() -> int:
    from ray import serve

    from inferox.engine.ray import DEPLOYMENT_NAME

    status = serve.status().applications["inferox"].deployments[DEPLOYMENT_NAME]
    return int(status.replica_states.get("RUNNING", 0))


def test_replica_killed_under_load_recovers(deployed: str, mlp_package: Path) -> None:
    import ray

    assert wait_until(lambda: _running_replicas() == 2, timeout=60, interval=0.2)
    x = np.full((1, 4), 0.5, np.float32)
    expected = _mlp_reference(mlp_package, x)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]})
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://{deployed}", timeout=90) as client:
            while not stop.is_set():
                r = client.post("/v2/models/mlp/infer", content=body)
                if r.status_code == 200:
                    np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(1, 3), expected, rtol=1e-5)
                    code = "OK"
                elif r.headers.get("content-type", "").startswith("application/json"):
                    code = r.json()["code"]  # an Inferox failure is a V2 error body with a code
                else:
                    code = f"proxy: {r.text[:80]}"
                with lock:
                    outcomes.append((r.status_code, code))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(outcomes) >= 20, timeout=60, interval=0.2)
    victim = _replica_actors()[0]
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    killed_at = len(outcomes)
    assert wait_until(lambda: len(outcomes) >= killed_at + 40, timeout=90, interval=0.2)
    stop.set()
    for t in threads:
        t.join(timeout=100)
        assert not t.is_alive(), "a request hung"
    # One hop: the requests the killed replica held are answered by Ray's proxy (its 500 for a
    # dead actor, no Inferox body); every other request is served by the live replica. None hangs.
    failures = [(s, c) for s, c in outcomes if c != "OK"]
    assert {s for s, _ in failures} <= {500, 503} and len(failures) <= len(threads), failures
    assert sum(1 for _, c in outcomes[killed_at:] if c == "OK") >= 20
    # Ray Serve replaces the killed replica, and the deployment serves from both again.
    assert wait_until(lambda: _running_replicas() == 2 and len(_replica_actors()) == 2, timeout=120, interval=0.2)
    with httpx.Client(base_url=f"http://{deployed}", timeout=90) as client:
        for _ in range(6):
            assert client.post("/v2/models/mlp/infer", content=body).status_code == 200
        assert client.get("/v2/health/ready").json() == {"ready": True}


def test_one_deployment_is_the_ingress(deployed: str) -> None:
    """One hop: the application is a single deployment (its replicas are the HTTP ingress), and Ray's
    proxy hands requests at the route prefix "/" straight to it."""
    from ray import serve

    from inferox.engine.ray import APP_NAME, DEPLOYMENT_NAME

    app = serve.status().applications[APP_NAME]
    assert list(app.deployments) == [DEPLOYMENT_NAME]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    r = httpx.post(f"http://{deployed}/v2/models/mlp/infer", json=body, headers={"x-request-id": "hop-1"}, timeout=60)
    assert r.status_code == 200
    assert r.headers.get_list("x-request-id") == ["hop-1"]  # once: the proxy's, the app's copy left out


def test_v1_embeddings_equal_the_plain_server(deployed: str, tmp_path: Path, minilm_package: Path) -> None:
    """The OpenAI client against `inferox serve --ray` and against `inferox serve` on the same package."""
    import openai

    from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

    plain_pkg = tmp_path / "minilm"
    shutil.copytree(minilm_package, plain_pkg)
    (plain_pkg / "serving.toml").write_text('backends = ["torch"]\n')
    answers = {}
    with ServerThread(InferoxServer(packages={"minilm": plain_pkg}, config=ServerConfig(access_log=False))) as st:
        for where, url in (("plain", st.url), ("ray", f"http://{deployed}")):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120, max_retries=0)
            answers[where] = client.embeddings.create(model="minilm", input=TEXTS)
    plain, ray_answer = answers["plain"], answers["ray"]
    assert ray_answer.model == plain.model == "minilm" and ray_answer.usage == plain.usage and plain.usage.prompt_tokens > 0
    assert [d.index for d in ray_answer.data] == [d.index for d in plain.data] == [0, 1, 2]
    np.testing.assert_allclose([d.embedding for d in ray_answer.data], [d.embedding for d in plain.data], atol=1e-5)
    r = httpx.post(f"http://{deployed}/v1/embeddings", json={"model": "ghost", "input": ["x"]}, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "MODEL_NOT_FOUND" and "ghost" in r.json()["error"]["message"]


def test_versions_and_timeouts_through_the_data_plane(deployed: str) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with httpx.Client(base_url=f"http://{deployed}", timeout=120) as client:
        for version in ("1", "2"):
            r = client.post(f"/v2/models/mlpv/versions/{version}/infer", json=body)
            assert r.status_code == 200 and r.json()["model_version"] == version, r.text
        assert client.post("/v2/models/mlpv/infer", json=body).json()["model_version"] == "2"
        missing = client.post("/v2/models/mlpv/versions/3/infer", json=body)
        assert (missing.status_code, missing.json()["code"]) == (404, "MODEL_NOT_FOUND") and "mlpv/versions/3" in missing.json()["error"]
        late = client.post("/v2/models/mlpv/versions/1/infer", json={**body, "parameters": {"timeout": 1}})
        assert (late.status_code, late.json()["code"]) == (504, "TIMEOUT"), late.text


def test_metrics_count_the_requests(deployed: str) -> None:
    """/metrics is the replica's data plane: the request just answered is counted, by protocol."""
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    with httpx.Client(base_url=f"http://{deployed}", timeout=120) as client:
        for _ in range(4):
            assert client.post("/v2/models/mlp/infer", json=body).status_code == 200
        pages = []
        for _ in range(10):  # two replicas: each scrape shows the replica that answered it
            page = client.get("/metrics")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
            pages.append(page.text)
    counted = [line for text in pages for line in text.splitlines() if line.startswith('inferox_requests_total{model="mlp",version="1",protocol="rest",outcome="success"}')]
    assert counted and max(int(line.rsplit(" ", 1)[1]) for line in counted) >= 1, pages[-1][:2000]


def test_the_clusters_workers_run_at_normal_priority(ray_cluster: str) -> None:
    # local_cluster_environment() (the conftest's cluster, as `inferox serve --ray`'s) reaches the
    # workers Ray starts: at Ray's default niceness of 15 a busy machine starved the server.
    import ray

    from inferox.engine.ray._app import LOCAL_WORKER_NICENESS

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    assert ray.get(niceness.remote(), timeout=120) == LOCAL_WORKER_NICENESS
