"""The replica and the ingress in-process (no cluster): package checks, health, loading,
eviction, both batchers, and the ingress's routing over a real replica."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from inferox.core.errors import ConfigError, InvalidInputError, ModelNotFoundError, PackageIntegrityError, PackageNotFoundError
from inferox.engine.ray import InferoxIngress, InferoxReplica, build_app, call_asgi, metadata_digest, package_digests
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


def test_healthy_replica_verifies_and_serves_through_the_server_app(repo: Path, mlp_package: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))
    replica.check_health()
    assert replica.verify("mlp") == repo / "mlp"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    async def go() -> None:
        assert await replica.is_ready()
        loaded = await replica.load("mlp")  # held, as Ray Serve's multiplexer holds it
        reply = await replica.dispatch("mlp", "POST", "/v2/models/mlp/infer", b"", [("content-type", "application/json")], _infer_body(x))
        assert reply.status == 200, reply.body
        body = json.loads(reply.body)
        assert body["id"] == "r1" and body["model_name"] == "mlp"
        np.testing.assert_allclose(np.asarray(body["outputs"][0]["data"]).reshape(2, 3), _expected(mlp_package, x), rtol=1e-5)
        meta = await replica.dispatch("mlp", "GET", "/v2/models/mlp", b"", [], b"")
        assert json.loads(meta.body).get("parameters", {}).get("backends") == ["torch"], meta.body
        assert loaded.name == "mlp"
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
    with pytest.raises(ConfigError) as ce:
        InferoxReplica(tmp_path, batching="magic")
    assert ce.value.code == "INVALID_CONFIG" and ce.value.field == "batching"


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


def test_serve_batching_runs_requests_as_infer_batch(repo: Path, mlp_package: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo), batching="serve")
    xs = [np.full((1, 4), i, dtype=np.float32) for i in range(6)]

    async def go() -> None:
        loaded = await replica.load("mlp")
        replies = await asyncio.gather(
            *[replica.dispatch("mlp", "POST", "/v2/models/mlp/infer", b"", [("x-request-id", f"q{i}")], _infer_body(x)) for i, x in enumerate(xs)]
        )
        for x, reply in zip(xs, replies, strict=True):
            assert reply.status == 200, reply.body
            out = json.loads(reply.body)["outputs"][0]
            np.testing.assert_allclose(np.asarray(out["data"]).reshape(1, 3), _expected(mlp_package, x), rtol=1e-5)
        # A bad item fails alone, with the V2 error body, and leaves the others answered.
        bad = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [0.0] * 5}]}).encode()
        good, wrong = await asyncio.gather(
            replica.dispatch("mlp", "POST", "/v2/models/mlp/infer", b"", [], _infer_body(xs[0])),
            replica.dispatch("mlp", "POST", "/v2/models/mlp/infer", b"", [("x-request-id", "bad1")], bad),
        )
        assert good.status == 200
        assert wrong.status == 400 and json.loads(wrong.body)["code"] == "INVALID_INPUT"
        assert ("x-request-id", "bad1") in wrong.headers
        unknown = await replica.dispatch("mlp", "POST", "/v2/models/mlp/versions/7/infer", b"", [], _infer_body(xs[0]))
        assert unknown.status == 404 and json.loads(unknown.body)["code"] == "MODEL_NOT_FOUND"
        assert loaded.name == "mlp"
        await replica.shutdown()

    asyncio.run(go())


def test_run_batch_isolates_a_failing_item(repo: Path) -> None:
    replica = InferoxReplica(repo, digests=package_digests(repo))

    async def go() -> None:
        loaded = await replica.load("mlp")
        assert replica.server is not None and loaded.name == "mlp"
        engine = replica.server.models["mlp"].engine
        good = {"input": np.ones((1, 4), np.float32)}
        bad = {"input": np.ones((1, 5), np.float32)}
        out = await replica.run_batch([engine] * 3, ["mlp"] * 3, [good, bad, good])
        assert out[0]["output"].shape == (1, 3) and out[2]["output"].shape == (1, 3)
        assert isinstance(out[1], InvalidInputError) and out[1].name == "input"
        alone = await replica.run_batch([engine], ["mlp"], [bad])
        assert isinstance(alone[0], InvalidInputError)
        await replica.shutdown()

    asyncio.run(go())


def test_call_asgi_reports_status_headers_and_body() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await request.body()).decode() + request.url.query, status_code=201, headers={"x-k": "v"})

    app = Starlette(routes=[Route("/e", echo, methods=["POST"])])
    reply = asyncio.run(call_asgi(app, "POST", "/e", b"q=1", [], b"hello"))
    assert reply.status == 201 and reply.body == b"helloq=1" and ("x-k", "v") in reply.headers


def _ingress_client(replica: InferoxReplica, digests: dict[str, str], **kwargs: object) -> tuple[InferoxIngress, httpx.AsyncClient]:
    ingress = InferoxIngress(raykit.LocalHandle(replica), digests=digests, **kwargs)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=ingress.__serve_build_asgi_app__())
    return ingress, httpx.AsyncClient(transport=transport, base_url="http://ingress")


def test_ingress_routes_the_v2_api(repo: Path, mlp_package: Path) -> None:
    digests = package_digests(repo)
    replica = InferoxReplica(repo, digests=digests)
    x = np.ones((3, 4), np.float32)

    async def go() -> None:
        _, client = _ingress_client(replica, digests, token="s3cret")
        async with client:
            assert (await client.get("/v2/health/live")).json() == {"live": True}
            assert (await client.get("/v2/health/ready")).status_code == 200
            meta = (await client.get("/v2")).json()
            assert meta["name"] == "inferox" and meta["parameters"] == {"deployment": "ray-serve"}
            index = await client.post("/v2/repository/index", headers={"authorization": "Bearer s3cret"})
            assert [e["name"] for e in index.json()] == ["mlp", "mlp2"]
            assert (await client.post("/v2/repository/index")).status_code == 401
            r = await client.post("/v2/models/mlp/infer", content=_infer_body(x))
            assert r.status_code == 200
            np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(3, 3), _expected(mlp_package, x), rtol=1e-5)
            assert (await client.get("/v2/models/mlp")).json()["name"] == "mlp"
            load = await client.post("/v2/repository/models/mlp2/load", headers={"authorization": "Bearer s3cret"})
            assert load.json() == {"name": "mlp2", "state": "READY"}
            missing = await client.post("/v2/repository/models/ghost/load", headers={"authorization": "Bearer s3cret"})
            assert missing.status_code == 404 and missing.json()["code"] == "MODEL_NOT_FOUND"
            unload = await client.post("/v2/repository/models/mlp/unload", headers={"authorization": "Bearer s3cret"})
            assert unload.status_code == 405 and unload.json()["code"] == "UNSUPPORTED"
            bad_name = await client.get("/v2/models/bad%20name")
            assert bad_name.status_code == 400 and bad_name.json()["code"] == "INVALID_INPUT"
            nowhere = await client.get("/v3/nothing")
            assert nowhere.status_code == 404 and nowhere.json()["code"] == "NOT_FOUND"
        await replica.shutdown()

    asyncio.run(go())


def test_ingress_limits_and_failures(repo: Path) -> None:
    digests = package_digests(repo)
    replica = InferoxReplica(repo, digests=digests)

    class Stuck:
        """A handle whose replica never answers, or whose replica has died."""

        def __init__(self, fail: BaseException | None) -> None:
            self.fail = fail

        def options(self, **_: object) -> Stuck:
            return self

        @property
        def handle(self) -> raykit._Method:
            async def call(*_: object) -> None:
                if self.fail is not None:
                    raise self.fail
                await asyncio.sleep(60)

            return raykit._Method(call)

        @property
        def is_ready(self) -> raykit._Method:
            return self.handle

    async def go() -> None:
        _, client = _ingress_client(replica, digests, max_body_bytes=10)
        async with client:
            big = await client.post("/v2/models/mlp/infer", content=b"x" * 100)
            assert big.status_code == 413 and big.json()["code"] == "PAYLOAD_TOO_LARGE"
        for fail, status, code in ((RuntimeError("actor died"), 503, "UNAVAILABLE"), (None, 504, "TIMEOUT")):
            ingress = InferoxIngress(Stuck(fail), digests=digests, request_timeout_s=-4.8)
            transport = httpx.ASGITransport(app=ingress.build_asgi_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://i") as c:
                r = await c.post("/v2/models/mlp/infer", content=b"{}")
                assert r.status_code == status and r.json()["code"] == code
                if fail is not None:
                    assert (await c.get("/v2/health/ready")).status_code == 503
        err = InferoxIngress(Stuck(PackageNotFoundError("gone", path="/p")), digests=digests)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=err.build_asgi_app()), base_url="http://i") as c:
            r = await c.get("/v2/models/mlp")
            assert r.status_code == 404 and r.json()["code"] == "PACKAGE_NOT_FOUND"

    asyncio.run(go())


def test_build_app_validates_its_settings(repo: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        build_app(repo, batching="nope")
    assert ei.value.field == "batching"
    with pytest.raises(ConfigError) as ei:
        build_app(repo, replicas=2, autoscaling_config={"min_replicas": 1})
    assert ei.value.field == "replicas"
    with pytest.raises(ConfigError) as ei:
        build_app(repo, replicas=0)
    assert ei.value.field == "replicas" and ei.value.value == 0
    app = build_app(repo, autoscaling_config={"min_replicas": 1, "max_replicas": 2}, config=ServerConfig(token="t"))
    assert type(app).__name__ == "Application"


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
