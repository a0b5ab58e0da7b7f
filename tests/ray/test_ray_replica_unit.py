"""The replica in-process (no cluster): package checks, health, loading, eviction, and its ASGI
app — the server's own REST app behind the model loading Ray adds — driven by a real httpx client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from inferox.core.errors import ConfigError, InvalidInputError, ModelNotFoundError, PackageIntegrityError, PackageNotFoundError
from inferox.engine.ray import UNSUPPORTED, InferoxReplica, build_app, metadata_digest, package_digests
from inferox.engine.server import ServerConfig

from . import raykit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def repo(tmp_path: Path, mlp_package: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    raykit.add_model(root, "mlp", mlp_package)
    raykit.add_model(root, "mlp2", mlp_package)
    return root


def _infer_body(x: np.ndarray) -> bytes:
    return json.dumps({"id": "r1", "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}).encode()


def _expected(package: Path, x: np.ndarray) -> np.ndarray:
    from inferox.mlpkg import load_model

    return np.asarray(load_model(package, backend="torch").forward_any({"input": x})["output"])


def test_digests_are_of_metadata_json(repo: Path) -> None:
    digests = package_digests(repo)
    assert sorted(digests) == ["mlp", "mlp2"]
    assert digests["mlp"] == metadata_digest(repo / "mlp") and len(digests["mlp"]) == 64


def _client(replica: InferoxReplica) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=replica.asgi_app()), base_url="http://replica")


def test_healthy_replica_verifies_and_serves_through_the_server_app(repo: Path, mlp_package: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    replica.check_health()
    assert replica.verify("mlp") == repo / "mlp"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    async def go() -> None:
        assert await replica.is_ready()
        async with _client(replica) as client:
            # The request naming the model loads it here first (the multiplexed loader), then the
            # server's own app answers it.
            r = await client.post("/v2/models/mlp/infer", content=_infer_body(x), headers={"x-request-id": "q1"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["id"] == "r1" and body["model_name"] == "mlp" and body["model_version"] == "1"
            np.testing.assert_allclose(np.asarray(body["outputs"][0]["data"]).reshape(2, 3), _expected(mlp_package, x), rtol=1e-5)
            meta = (await client.get("/v2/models/mlp")).json()
            assert meta["parameters"]["backends"] == ["torch"], meta
            assert replica.server is not None and sorted(replica.server.models) == ["mlp"]
            # A deadline the request cannot meet is the data plane's 504 with its code.
            late = json.loads(_infer_body(x))
            late["parameters"] = {"timeout": 1}
            r = await client.post("/v2/models/mlp/infer", json=late)
            assert (r.status_code, r.json()["code"]) == (504, "TIMEOUT"), r.text
            page = (await client.get("/metrics")).text
            assert 'inferox_requests_total{model="mlp",version="1",protocol="rest",outcome="success"} 1' in page, page
            assert 'inferox_request_failures_total{model="mlp",version="1",protocol="rest",code="TIMEOUT"} 1' in page
        await replica.shutdown()

    asyncio.run(go())


def test_missing_package_on_this_node_makes_the_replica_unhealthy(repo: Path) -> None:
    digests = package_digests(repo)
    shutil.rmtree(repo / "mlp2")
    replica = InferoxReplica(repo, digests=digests)
    with pytest.raises(PackageNotFoundError) as ei:
        replica.check_health()
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(repo / "mlp2")
    assert "missing on this node" in str(ei.value)

    async def go() -> None:
        assert not await replica.is_ready()
        with pytest.raises(PackageNotFoundError):
            await replica.load("mlp")

    asyncio.run(go())


def test_corrupt_weights_make_the_replica_unhealthy(repo: Path) -> None:
    digests = package_digests(repo)
    raykit.corrupt(repo / "mlp")
    replica = InferoxReplica(repo, digests=digests)
    with pytest.raises(PackageIntegrityError) as ei:
        replica.check_health()
    assert ei.value.code == "INTEGRITY_ERROR" and ei.value.field == "sha256" and ei.value.path == "model.safetensors"


def test_package_differing_from_the_driver_is_refused(repo: Path) -> None:
    digests = package_digests(repo)
    meta = repo / "mlp" / "metadata.json"
    meta.write_text(meta.read_text() + "\n")
    replica = InferoxReplica(repo, digests=digests)
    with pytest.raises(PackageIntegrityError) as ei:
        replica.check_health()
    assert ei.value.code == "INTEGRITY_ERROR" and ei.value.field == "sha256" and ei.value.path == str(repo / "mlp")


def test_corruption_after_start_is_caught_on_load(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    replica.check_health()
    raykit.corrupt(repo / "mlp2")

    async def go() -> None:
        with pytest.raises(PackageIntegrityError) as ei:
            await replica.load("mlp2")
        assert ei.value.field == "sha256"

    asyncio.run(go())
    with pytest.raises(PackageIntegrityError):
        replica.check_health()


def test_unreadable_repository_and_bad_settings(tmp_path: Path) -> None:
    replica = InferoxReplica(tmp_path / "nowhere")
    with pytest.raises(PackageNotFoundError) as ei:
        replica.check_health()
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(tmp_path / "nowhere")

    async def go() -> None:
        async with _client(replica) as client:
            assert (await client.get("/v2/health/live")).json() == {"live": True}
            ready = await client.get("/v2/health/ready")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            r = await client.get("/v2/models/mlp")
            assert (r.status_code, r.json()["code"]) == (404, "PACKAGE_NOT_FOUND") and str(tmp_path / "nowhere") in r.json()["error"]

    asyncio.run(go())


def test_unknown_and_invalid_names(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    with pytest.raises(ModelNotFoundError) as ei:
        replica.verify("ghost")
    assert ei.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(InvalidInputError) as ii:
        replica.verify("../etc")
    assert ii.value.code == "INVALID_INPUT" and ii.value.name == "model_name"
    replica.check_health()  # asking for models that do not exist does not make a replica unhealthy


def test_eviction_unloads_the_model_from_a_worker_thread(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))

    async def go() -> None:
        loaded = await replica.load("mlp")
        assert replica.server is not None and "mlp" in replica.server.models
        # Ray Serve runs a sync __del__ in an executor thread when it evicts a model.
        await asyncio.get_running_loop().run_in_executor(None, loaded.__del__)
        assert "mlp" not in replica.server.models
        loaded.__del__()  # a second call (garbage collection) is a no-op
        again = await replica.load("mlp")
        again.__del__()  # on the loop thread: scheduled, never blocking
        await asyncio.sleep(0.2)
        assert "mlp" not in replica.server.models
        await replica.shutdown()

    asyncio.run(go())


def test_the_app_routes_like_the_rest_server(repo: Path, mlp_package: Path) -> None:
    """Every route is the REST app's (auth, index, unknown paths); Ray's part is loading the
    model a request names — in the path, or in the JSON body of the OpenAI-style routes — and
    refusing unload."""
    replica = InferoxReplica(repo, digests=package_digests(repo), config=ServerConfig(token="s3cret", access_log=False))
    auth = {"authorization": "Bearer s3cret"}

    async def go() -> None:
        async with _client(replica) as client:
            assert (await client.get("/v2/health/live")).json() == {"live": True}
            assert (await client.get("/v2/health/ready")).json() == {"ready": True}
            assert (await client.get("/v2")).json()["name"] == "inferox"
            index = await client.post("/v2/repository/index", headers=auth)
            assert [e["name"] for e in index.json()] == ["mlp", "mlp2"]
            denied = await client.post("/v2/repository/index")
            assert (denied.status_code, denied.json()["code"]) == (401, "UNAUTHORIZED")
            denied = await client.post("/v2/repository/models/mlp2/load")
            assert (denied.status_code, denied.json()["code"]) == (401, "UNAUTHORIZED")
            load = await client.post("/v2/repository/models/mlp2/load", headers=auth)
            assert load.status_code == 200 and load.json() == {"name": "mlp2", "version": "1", "versions": ["1"], "state": "READY"}
            missing = await client.post("/v2/repository/models/ghost/load", headers=auth)
            assert (missing.status_code, missing.json()["code"]) == (404, "MODEL_NOT_FOUND") and "ghost" in missing.json()["error"]
            unload = await client.post("/v2/repository/models/mlp2/unload", headers=auth)
            assert (unload.status_code, unload.json()["code"]) == (405, UNSUPPORTED)
            # A model named in the body of a /v1 route is loaded before the route runs: the MLP
            # has no text input, so the embeddings route answers it is no embedding model.
            emb = await client.post("/v1/embeddings", json={"model": "mlp", "input": ["hi"]})
            assert emb.status_code == 404 and emb.json()["error"]["code"] == "MODEL_NOT_FOUND", emb.text
            assert replica.server is not None and sorted(replica.server.models) == ["mlp", "mlp2"]
            # Names that are not models are answered by the app, as inferox serve answers them.
            ghost = await client.post("/v1/embeddings", json={"model": "ghost", "input": ["hi"]})
            assert ghost.status_code == 404 and "ghost" in ghost.json()["error"]["message"]
            bad = await client.get("/v2/models/bad%20name")
            assert bad.status_code == 404 and bad.json()["code"] == "MODEL_NOT_FOUND"
            nowhere = await client.get("/v3/nothing")
            assert (nowhere.status_code, nowhere.json()["code"]) == (404, "NOT_FOUND")
            not_json = await client.post("/v1/embeddings", content=b"{nope")
            assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "INVALID_INPUT"
        await replica.shutdown()

    asyncio.run(go())


def test_routes_naming_no_model_in_the_body(repo: Path, tmp_path: Path, mlp_package: Path) -> None:
    """TEI's routes may name the model in ?model=, or not at all when one model is served."""
    single = tmp_path / "single"
    raykit.add_model(single, "only", mlp_package)
    one = InferoxReplica(single, digests=package_digests(single))
    two = InferoxReplica(repo, digests=package_digests(repo))

    async def go() -> None:
        async with _client(one) as client:
            r = await client.post("/v1/embeddings", json={"input": ["hi"]})
            assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text  # the app's answer
            assert one.server is not None and sorted(one.server.models) == ["only"]
            assert (await client.get("/metrics")).status_code == 200
        async with _client(two) as client:
            await client.post("/v1/embeddings?model=mlp2", json={"input": ["hi"]})
            await client.get("/v1/models")  # names nothing, and the repository holds two models
            assert two.server is not None and sorted(two.server.models) == ["mlp2"]
        await one.shutdown()
        await two.shutdown()

    asyncio.run(go())


def test_behind_rays_proxy_the_request_id_header_is_left_to_the_proxy(repo: Path) -> None:
    """Ray's proxy adds X-Request-ID (the request's) to every response: the app's own copy goes."""
    replica = InferoxReplica(repo, digests=package_digests(repo))
    x = np.ones((1, 4), np.float32)

    async def go() -> None:
        no_id = json.dumps({"inputs": json.loads(_infer_body(x))["inputs"]})
        transport = httpx.ASGITransport(app=replica.asgi_app(behind_ray_proxy=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            same = await client.post("/v2/models/mlp/infer", content=no_id, headers={"x-request-id": "ray-1"})
            assert same.status_code == 200 and same.headers.get_list("x-request-id") == []
            # The V2 body's id is the request's id for the data plane: it is answered, not dropped.
            body = await client.post("/v2/models/mlp/infer", content=_infer_body(x), headers={"x-request-id": "ray-2"})
            assert body.status_code == 200 and body.headers.get_list("x-request-id") == ["r1"]
        async with _client(replica) as client:  # no proxy in front: the app's header stays
            plain = await client.post("/v2/models/mlp/infer", content=no_id, headers={"x-request-id": "q-1"})
            assert plain.status_code == 200 and plain.headers.get_list("x-request-id") == ["q-1"]
        await replica.shutdown()

    asyncio.run(go())


def test_a_body_beyond_the_limit_is_left_to_the_app(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo), config=ServerConfig(max_body_bytes=64, access_log=False))

    async def go() -> None:
        async with _client(replica) as client:
            r = await client.post("/v1/embeddings", json={"model": "mlp", "input": ["x" * 100]})
            assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE", r.text
            assert replica.server is not None and replica.server.models == {}  # nothing was loaded for it
        await replica.shutdown()

    asyncio.run(go())


def test_corrupt_package_found_by_a_request_stops_the_replica(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    raykit.corrupt(repo / "mlp2")

    async def go() -> None:
        async with _client(replica) as client:
            r = await client.post("/v2/models/mlp2/infer", content=_infer_body(np.ones((1, 4), np.float32)))
            assert (r.status_code, r.json()["code"]) == (422, "INTEGRITY_ERROR") and "model.safetensors" in r.json()["error"], r.text
            emb = await client.post("/v1/embeddings", json={"model": "mlp", "input": ["hi"]})
            assert emb.json()["error"]["code"] == "INTEGRITY_ERROR"  # OpenAI's error shape on /v1
            assert (await client.get("/v2/health/ready")).status_code == 503
        with pytest.raises(PackageIntegrityError):
            replica.check_health()

    asyncio.run(go())


def test_lifespan_starts_and_drains_the_server(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    app = replica.asgi_app()

    async def go() -> None:
        inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        sent: list[dict[str, object]] = []

        async def send(message: object) -> None:
            sent.append(message)  # type: ignore[arg-type]

        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})
        await app({"type": "lifespan"}, inbox.get, send)  # type: ignore[arg-type]
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert replica.server is not None and replica.server.dataplane.shutting_down

        broken = InferoxReplica(repo / "nowhere")
        sent.clear()
        inbox.put_nowait({"type": "lifespan.startup"})
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await broken.asgi_app()({"type": "lifespan"}, inbox.get, send)  # type: ignore[arg-type]
        # An unhealthy replica still starts (Ray Serve's health check reports why it must not serve).
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    asyncio.run(go())


def test_build_app_validates_its_settings(repo: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        build_app(repo, replicas=2, autoscaling_config={"min_replicas": 1})
    assert ei.value.field == "replicas"
    with pytest.raises(ConfigError) as ei:
        build_app(repo, replicas=0)
    assert ei.value.field == "replicas" and ei.value.value == 0
    app = build_app(repo, autoscaling_config={"min_replicas": 1, "max_replicas": 2}, config=ServerConfig(token="t"))
    assert type(app).__name__ == "Application"


def test_replica_threads_fit_the_cpus_ray_reserves() -> None:
    from inferox.engine.ray import replica_config
    from inferox.engine.server import ServingSettings

    assert replica_config(ServerConfig(), num_cpus=2.5).defaults.threads == 2
    assert replica_config(ServerConfig(), num_cpus=0.5).defaults.threads == 1
    assert replica_config(ServerConfig(), num_cpus=1, num_gpus=1).defaults.threads is None
    given = ServerConfig(defaults=ServingSettings(threads=4))
    assert replica_config(given, num_cpus=1) is given  # the user's --threads / [models] threads wins


def test_serve_on_ray_names_a_bad_mmap_threshold_before_starting_anything(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas apply INFEROX_MMAP_THRESHOLD in their constructors, where a bad value would only
    show in Ray's logs; the driver names it first, before Ray or Serve starts."""
    import ray

    from inferox.core.constants import ENV_MMAP_THRESHOLD
    from inferox.engine.ray import serve_on_ray

    was_running = ray.is_initialized()
    monkeypatch.setenv(ENV_MMAP_THRESHOLD, "lots")
    with pytest.raises(ConfigError) as ei:
        serve_on_ray(build_app(repo), blocking=False)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == ENV_MMAP_THRESHOLD and ei.value.value == "lots"
    assert ENV_MMAP_THRESHOLD in str(ei.value)
    assert ray.is_initialized() == was_running


def test_importing_the_engine_does_not_import_ray() -> None:
    import subprocess
    import sys

    code = "import sys, inferox.engine, inferox.engine.server; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_threads_are_not_left_behind(repo: Path) -> None:
    before = threading.active_count()
    replica = InferoxReplica(repo, digests=package_digests(repo))

    async def go() -> None:
        await replica.load("mlp")
        await replica.shutdown()

    asyncio.run(go())
    assert threading.active_count() <= before + 2


def test_a_local_cluster_gets_normal_priority_and_time_to_start_its_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray starts workers at niceness 15 and kills a proxy not ready within 5 s: on a busy 2-core
    # machine the proxy took a minute. A local cluster inherits our settings, a user's win.
    from inferox.engine.ray import local_cluster_environment
    from inferox.engine.ray._app import LOCAL_PROXY_READY_TIMEOUT_S, LOCAL_WORKER_NICENESS

    for name in ("RAY_worker_niceness", "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    local_cluster_environment()
    assert int(os.environ["RAY_worker_niceness"]) == LOCAL_WORKER_NICENESS == 0
    assert float(os.environ["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]) == LOCAL_PROXY_READY_TIMEOUT_S > 5
    monkeypatch.setenv("RAY_worker_niceness", "10")
    monkeypatch.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "7")
    local_cluster_environment()
    assert (os.environ["RAY_worker_niceness"], os.environ["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]) == ("10", "7")
