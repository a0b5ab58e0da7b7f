"""Fixtures of the Ray tests: real packages in a model repository, and one local Ray cluster
(loopback, 2 CPUs, no dashboard) shared by the session and torn down at its end."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
try:
    import ray.serve  # noqa: F401
except ImportError:  # without the ray extra (inferox-engine[ray]) this folder is not collected
    collect_ignore_glob = ["test_*.py"]

import raykit

from tests.server.packages import build_minilm_package, build_mlp_package  # the same real packages the server tests use


@pytest.fixture(scope="session")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlp_package(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_minilm_package(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster for the session; Ray Serve's proxy on a free loopback port."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, namespace="inferox-tests")
    port = raykit.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
