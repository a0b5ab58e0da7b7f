"""A package corrupted on the node after deployment: the replica that tries to load it answers
with the integrity error naming the file, turns unhealthy, and is never left serving."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.net import wait_until

from . import raykit

pytestmark = pytest.mark.timeout(240)


def test_corrupt_package_on_load_is_reported(ray_cluster: str, tmp_path: Path, mlp_package: Path) -> None:
    from ray import serve

    from inferox.engine.ray import APP_NAME, DEPLOYMENT_NAME, build_app, serve_on_ray

    repo = tmp_path / "repo"
    repo.mkdir()
    raykit.add_model(repo, "good", mlp_package)
    bad = raykit.add_model(repo, "bad", mlp_package)
    host, port = ray_cluster.split(":")
    serve_on_ray(build_app(repo, replicas=1, num_cpus=0.5, health_check_period_s=1.0), host=host, port=int(port), blocking=False)
    try:
        x = np.ones((1, 4), np.float32)
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]})
        with httpx.Client(base_url=f"http://{ray_cluster}", timeout=60) as client:
            assert client.post("/v2/models/good/infer", content=body).status_code == 200
            raykit.corrupt(bad)  # the copy on this node no longer matches its recorded hashes
            r = client.post("/v2/models/bad/infer", content=body)
            payload = r.json()
            assert r.status_code >= 400 and payload["code"] == "INTEGRITY_ERROR", payload
            assert "model.safetensors" in payload["error"] and "sha256" in payload["error"]
            # The replica stops serving every model (Ray Serve's health check now fails with the reason).
            r2 = client.post("/v2/models/good/infer", content=body)
            assert r2.status_code >= 400 and r2.json()["code"] in ("INTEGRITY_ERROR", "UNAVAILABLE"), r2.text
            assert wait_until(lambda: client.get("/v2/health/ready").status_code == 503, timeout=60, interval=0.2)

        def reported() -> bool:
            status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
            return status.status != "HEALTHY" and "PackageIntegrityError" in status.message and "model.safetensors: sha256" in status.message

        assert wait_until(reported, timeout=90, interval=0.2), serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
    finally:
        serve.delete(APP_NAME)
