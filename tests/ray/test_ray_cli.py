"""``inferox serve --ray``: option errors in-process, and the real command against the test cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from inferox.engine.cli import cli
from tests.support.net import wait_until

from . import raykit

INFEROX = str(Path(sys.executable).parent / "inferox")


def _invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_serve_ray_needs_a_repository(mlp_package: Path) -> None:
    result = _invoke("serve", mlp_package, "--ray")
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert "error [INVALID_CONFIG]:" in result.output and "model repository folder" in result.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["{nope", "[1, 2]"])
def test_serve_ray_rejects_bad_autoscaling(tmp_path: Path, mlp_package: Path, value: str) -> None:
    raykit.add_model(tmp_path, "mlp", mlp_package)
    result = _invoke("serve", tmp_path, "--ray", "--autoscaling", value)
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert "error [INVALID_CONFIG]:" in result.output and "--autoscaling" in result.output  # type: ignore[attr-defined]


def test_serve_ray_help_lists_the_ray_options() -> None:
    out = _invoke("serve", "--help").output  # type: ignore[attr-defined]
    for option in ("--ray", "--address", "--replicas", "--autoscaling", "--num-cpus", "--num-gpus", "--max-models-per-replica"):
        assert option in out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_ray_command_deploys_and_stops(ray_cluster: str, tmp_path: Path, mlp_package: Path, stop_signal: int) -> None:
    """The real command joins the running cluster (--address), serves the V2 API, and deletes its
    application on Ctrl-C or SIGTERM, exiting 0. (Ray Serve keeps the cluster's existing HTTP
    proxy, hence its port.)"""
    import ray

    repo = tmp_path / "repo"
    raykit.add_model(repo, "mlp", mlp_package)
    host, port = ray_cluster.split(":")
    address = ray.get_runtime_context().gcs_address
    cmd = [INFEROX, "serve", str(repo), "--ray", "--address", address, "--port", port, "--num-cpus", "0.5", "--autoscaling", '{"min_replicas": 1, "max_replicas": 2}']
    # Output to a file, not a pipe: Ray streams every worker's log lines to this driver, and an
    # unread pipe, once full, blocks the command in write() where it can no longer act on Ctrl-C.
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    try:
        body = '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'

        def answers() -> bool:
            try:
                return httpx.post(f"http://{host}:{port}/v2/models/mlp/infer", content=body, timeout=10).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(answers, timeout=150, interval=1.0)
        out = httpx.post(f"http://{host}:{port}/v2/models/mlp/infer", content=body, timeout=30).json()["outputs"][0]
        assert out["shape"] == [1, 3] and np.all(np.isfinite(out["data"]))
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=60) == 0
        from ray import serve

        assert "inferox" not in serve.status().applications
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        print(log_path.read_text(errors="replace")[-3000:])
