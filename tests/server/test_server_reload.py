"""Hot reload over HTTP with zero failed requests, version policies, model configuration, and
metrics labelled by version — on real MLP packages, real HTTP clients and tritonclient."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferox.engine import EngineConfig
from inferox.engine.server import InferoxServer, ServerConfig, ServerThread
from tests.support.net import wait_until
from tests.support.packages import build_mlp_package

TOKEN = "reload-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
X = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()}]}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three MLP packages with different weights: each version answers differently."""
    root = tmp_path_factory.mktemp("mlp-versions")
    return {v: build_mlp_package(root / f"v{v}", seed=int(v)) for v in ("1", "2", "3")}


def _reference(pkg: Path) -> np.ndarray:
    from inferox.mlpkg import load_model

    model = load_model(pkg, backend="torch")
    try:
        return np.asarray(model.forward_any({"input": X})["output"])
    finally:
        model.model.close()


@pytest.fixture(scope="module")
def expected(versions: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {v: _reference(p) for v, p in versions.items()}
    assert not np.allclose(out["1"], out["2"])  # the check below can tell the versions apart
    return out


def _tensors(path: Path) -> list[np.ndarray]:
    from safetensors.numpy import load_file

    return list(load_file(str(path)).values())


def _repo(tmp_path: Path, versions: dict[str, Path], present: tuple[str, ...], policy: str | None = None) -> Path:
    repo = tmp_path / "repo"
    for v in present:
        shutil.copytree(versions[v], repo / "mlp" / v)
    if policy:
        (repo / "mlp" / "serving.toml").write_text(f"backend = \"torch\"\n{policy}\n")
    return repo


def _answer(r: httpx.Response) -> tuple[str, np.ndarray]:
    body = r.json()
    return body["model_version"], np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(1, -1)


@pytest.fixture()
def reload_server(tmp_path: Path, versions: dict[str, Path]) -> Iterator[tuple[ServerThread, Path]]:
    repo = _repo(tmp_path, versions, ("1",))
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig(token=TOKEN))) as st:
        yield st, repo


def test_reload_under_load_has_zero_failures(reload_server: tuple[ServerThread, Path], versions: dict[str, Path], expected: dict[str, np.ndarray]) -> None:
    """Six clients send requests while two threads reload the model (the same version, then a new
    one): no request fails, and every answer is exactly version 1's or version 2's."""
    st, repo = reload_server
    stop = threading.Event()
    answers: list[tuple[str, np.ndarray]] = []
    sent_at: list[float] = []  # when each answer's request was sent (monotonic)
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=st.url, timeout=60) as c:
            while not stop.is_set():
                sent = time.monotonic()
                r = c.post("/v2/models/mlp/infer", json=BODY)
                with lock:
                    if r.status_code == 200:
                        answers.append(_answer(r))
                        sent_at.append(sent)
                    else:
                        failures.append(f"{r.status_code} {r.text}")

    loads: list[int] = []

    def reloader(new_version: bool) -> None:
        if new_version:
            shutil.copytree(versions["2"], repo / "mlp" / "2")
        r = httpx.post(f"{st.url}/v2/repository/models/mlp/load", headers=AUTH, timeout=120)
        loads.append(r.status_code)

    clients = [threading.Thread(target=client) for _ in range(6)]
    for t in clients:
        t.start()
    try:
        assert wait_until(lambda: len(answers) >= 10)
        first = threading.Thread(target=reloader, args=(False,))
        first.start()
        first.join(120)
        second = threading.Thread(target=reloader, args=(True,))
        again = threading.Thread(target=reloader, args=(False,))
        second.start()
        again.start()
        second.join(120)
        again.join(120)
        reloaded_at = time.monotonic()
        assert wait_until(lambda: sum(t > reloaded_at for t in list(sent_at)) >= 10)
    finally:
        stop.set()
        for t in clients:
            t.join(60)
    assert failures == []
    assert loads == [200, 200, 200]
    got_versions = {v for v, _ in answers}
    assert got_versions <= {"1", "2"} and "1" in got_versions
    for version, out in answers:
        np.testing.assert_allclose(out, expected[version], rtol=1e-5, atol=1e-5)
    # Requests sent after the reloads returned are the new version's (latest policy: version 1 is
    # retired). A request sent before may still finish late on a loaded machine, with version 1.
    after = [v for (v, _), t in zip(answers, sent_at) if t > reloaded_at]
    assert len(after) >= 10 and set(after) == {"2"}
    index = {e["name"]: e for e in httpx.post(f"{st.url}/v2/repository/index", headers=AUTH).json()}
    assert index["mlp"]["version"] == "2" and index["mlp"]["state"] == "READY"
    assert httpx.post(f"{st.url}/v2/models/mlp/versions/1/infer", json=BODY).status_code == 404


def test_a_failed_reload_keeps_the_old_version_serving(reload_server: tuple[ServerThread, Path], expected: dict[str, np.ndarray]) -> None:
    st, repo = reload_server
    (repo / "mlp" / "2").mkdir()
    (repo / "mlp" / "2" / "metadata.json").write_text("{broken")
    r = httpx.post(f"{st.url}/v2/repository/models/mlp/load", headers=AUTH)
    assert (r.status_code, r.json()["code"]) == (422, "PACKAGE_FORMAT_ERROR")
    assert "metadata.json" in r.json()["error"]
    ok = httpx.post(f"{st.url}/v2/models/mlp/infer", json=BODY)
    assert ok.status_code == 200
    version, out = _answer(ok)
    assert version == "1"
    np.testing.assert_allclose(out, expected["1"], rtol=1e-5, atol=1e-5)
    assert httpx.get(f"{st.url}/v2/health/ready").status_code == 200
    index = {e["name"]: e for e in httpx.post(f"{st.url}/v2/repository/index", headers=AUTH).json()}
    assert index["mlp"]["state"] == "READY" and "PACKAGE_FORMAT_ERROR" in index["mlp"]["reason"]


def test_a_reload_beyond_the_memory_budget_is_refused_and_the_old_keeps_serving(tmp_path: Path, versions: dict[str, Path]) -> None:
    repo = _repo(tmp_path, versions, ("1",))
    weights = sum(a.nbytes for a in _tensors(repo / "mlp" / "1" / "model.safetensors"))
    budget = int(weights * 1.5)  # one version fits, two (old + new while warming) do not
    config = ServerConfig(token=TOKEN, engine_config=EngineConfig(memory_budget_bytes=budget))
    with ServerThread(InferoxServer(repository=repo, config=config)) as st:
        assert httpx.post(f"{st.url}/v2/models/mlp/infer", json=BODY).status_code == 200
        shutil.copytree(versions["2"], repo / "mlp" / "2")
        r = httpx.post(f"{st.url}/v2/repository/models/mlp/load", headers=AUTH)
        assert (r.status_code, r.json()["code"]) == (507, "OUT_OF_MEMORY")
        assert str(budget) in r.json()["error"]
        ok = httpx.post(f"{st.url}/v2/models/mlp/infer", json=BODY)
        assert ok.status_code == 200 and ok.json()["model_version"] == "1"


def test_version_policy_serves_several_versions(tmp_path: Path, versions: dict[str, Path], expected: dict[str, np.ndarray], triton: Any) -> None:
    repo = _repo(tmp_path, versions, ("1", "2", "3"), "[version_policy]\nspecific = [1, 3]")
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig(token=TOKEN))) as st:
        for v in ("1", "3"):
            r = httpx.post(f"{st.url}/v2/models/mlp/versions/{v}/infer", json=BODY)
            version, out = _answer(r)
            assert version == v
            np.testing.assert_allclose(out, expected[v], rtol=1e-5, atol=1e-5)
        r = httpx.post(f"{st.url}/v2/models/mlp/versions/2/infer", json=BODY)
        assert (r.status_code, r.json()["code"]) == (404, "MODEL_NOT_FOUND") and "mlp/versions/1" in r.json()["error"]
        assert _answer(httpx.post(f"{st.url}/v2/models/mlp/infer", json=BODY))[0] == "3"  # unversioned → the latest
        meta = httpx.get(f"{st.url}/v2/models/mlp/versions/1").json()
        assert meta["versions"] == ["1", "3"]
        client = triton(st.address)
        assert client.is_model_ready("mlp", "1") and client.is_model_ready("mlp", "3")
        config = client.get_model_config("mlp", "3")
        assert config["name"] == "mlp" and config["max_batch_size"] > 0
        assert config["input"][0]["name"] == "input" and config["input"][0]["data_type"] == "TYPE_FP32" and config["input"][0]["dims"] == [4]
        assert config["version_policy"] == {"specific": {"versions": [1, 3]}}
        stats = {s["version"]: s for s in httpx.get(f"{st.url}/v2/models/mlp/stats").json()["model_stats"]}
        assert set(stats) == {"1", "3"} and stats["1"]["inference_count"] == 1 and stats["3"]["inference_count"] == 2
        assert all(b["compute_infer"]["ns"] > 0 for s in stats.values() for b in s["batch_stats"])
        httpx.post(f"{st.url}/v2/models/no-such-model/infer", json=BODY)
        metrics = httpx.get(f"{st.url}/metrics").text
        assert 'inferox_requests_total{model="mlp",version="3",protocol="rest",outcome="success"} 2' in metrics
        assert 'inferox_requests_total{model="mlp",version="1",protocol="rest",outcome="success"} 1' in metrics
        assert 'inferox_request_failures_total{model="mlp",version="",protocol="rest",code="MODEL_NOT_FOUND"} 1' in metrics
        assert "no-such-model" not in metrics and 'model="_unknown"' in metrics
        # Policy all: a reload picks up version 2 as well.
        (repo / "mlp" / "serving.toml").write_text('backend = "torch"\n[version_policy]\nall = true\n')
        r = httpx.post(f"{st.url}/v2/repository/models/mlp/load", headers=AUTH)
        assert r.status_code == 200 and r.json()["versions"] == ["1", "2", "3"]
        assert _answer(httpx.post(f"{st.url}/v2/models/mlp/versions/2/infer", json=BODY))[0] == "2"


def test_bad_version_policies_are_typed_errors(tmp_path: Path) -> None:
    from inferox.core.errors import ConfigError
    from inferox.engine.server import ServingSettings

    for text, field in (
        ("[version_policy]\nlatest = 0", "version_policy.latest"),
        ("[version_policy]\nnewest = 1", "version_policy.newest"),
        ("[version_policy]\nall = 1", "version_policy.all"),
        ("version_policy = 3", "version_policy"),
    ):
        f = tmp_path / "serving.toml"
        f.write_text(text)
        with pytest.raises(ConfigError) as ei:
            ServingSettings.from_file(f)
        assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field and ei.value.path == str(f)


def test_strict_and_relaxed_readiness(tmp_path: Path, versions: dict[str, Path]) -> None:
    repo = _repo(tmp_path, versions, ("1",))
    (repo / "broken").mkdir()
    (repo / "broken" / "metadata.json").write_text("{}")
    for strict, status in ((True, 503), (False, 200)):
        config = ServerConfig(exit_on_error=False, strict_readiness=strict)
        with ServerThread(InferoxServer(repository=repo, config=config)) as st:
            assert httpx.get(f"{st.url}/v2/health/ready").status_code == status
            assert httpx.get(f"{st.url}/v2/models/mlp/ready").status_code == 200
    # exit_on_error (the default): start-up fails with the model's error.
    from inferox.core.errors import PackageError

    with pytest.raises(PackageError):
        ServerThread(InferoxServer(repository=repo)).start()


def test_model_timeout_overrides_the_server_and_a_request_can_only_shorten_it() -> None:
    from inferox.engine.server import ServingSettings

    from .conftest import AffineModel

    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    server = InferoxServer(config=ServerConfig(request_timeout_s=0.2))
    server.add_model("patient", AffineModel("patient", delay=0.5), settings=ServingSettings(timeout_s=5.0))
    server.add_model("strict", AffineModel("strict", delay=0.5), settings=ServingSettings(timeout_s=0.2, max_batch_size=1))
    with ServerThread(server) as st:
        # serving.toml's timeout_s (5 s) overrides the server's 0.2 s for this model.
        assert httpx.post(f"{st.url}/v2/models/patient/infer", json=body, timeout=30).status_code == 200
        # The client asks for 10 s: it cannot lengthen the model's 0.2 s.
        longer = {**body, "parameters": {"timeout": 10_000_000}}
        r = httpx.post(f"{st.url}/v2/models/strict/infer", json=longer, timeout=30)
        assert (r.status_code, r.json()["code"]) == (504, "TIMEOUT")
        # …but it can shorten the patient model's 5 s.
        shorter = {**body, "parameters": {"timeout": 100_000}}
        r = httpx.post(f"{st.url}/v2/models/patient/infer", json=shorter, timeout=30)
        assert (r.status_code, r.json()["code"]) == (504, "TIMEOUT")
