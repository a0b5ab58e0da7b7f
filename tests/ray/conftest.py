"""Fixtures of the Ray tests: one local Ray cluster (loopback, 2 CPUs, no dashboard) shared by the
session and torn down at its end. The real packages are shared fixtures (:mod:`tests.support.fixtures`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import ray.serve  # noqa: F401
except ImportError:  # without the ray extra (inferox-engine[ray]) this folder is not collected
    collect_ignore_glob = ["test_*.py"]

from tests.support.net import free_port


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster for the session; Ray Serve's proxy on a free loopback port."""
    import ray
    from ray import serve

    from inferox.engine.ray import local_cluster_environment

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    local_cluster_environment()  # as `inferox serve --ray` starts its cluster: a busy machine starved Ray's defaults
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, namespace="inferox-tests")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
