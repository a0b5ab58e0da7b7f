"""Scale Inferox out on Ray Serve: the same packages and the same HTTP API across a cluster.

Needs the ``ray`` extra (``pip install inferox-engine[serve,ray]``); importing
:mod:`inferox.engine` never imports Ray, only this package does::

    import ray
    from ray import serve
    from inferox.engine.ray import build_app, local_cluster_environment

    local_cluster_environment()  # a local cluster's workers are the server: normal priority
    ray.init()
    serve.run(build_app("models/", replicas=2, num_cpus=1), route_prefix="/")

See ``docs/deployment-ray.md``.
"""

from __future__ import annotations

try:
    import ray as _ray  # noqa: F401
    from ray import serve as _serve  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("inferox.engine.ray needs Ray Serve: pip install 'inferox-engine[ray]'") from exc

from inferox.engine.ray._app import (
    APP_NAME,
    DEPLOYMENT_NAME,
    build_app,
    local_cluster_environment,
    replica_class,
    replica_config,
    serve_on_ray,
)
from inferox.engine.ray._replica import UNSUPPORTED, InferoxReplica, ReplicaApp, metadata_digest, package_digests

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "UNSUPPORTED",
    "InferoxReplica",
    "ReplicaApp",
    "build_app",
    "local_cluster_environment",
    "metadata_digest",
    "package_digests",
    "replica_class",
    "replica_config",
    "serve_on_ray",
]
